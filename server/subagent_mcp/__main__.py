"""``python -m subagent_mcp`` runs the same command as ``subagent-mcp``."""

import sys

from .cli import main

sys.exit(main())
