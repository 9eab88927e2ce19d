"""Runs on Temporal (``SUBAGENT_MCP_EXECUTOR=temporal``): a run is one workflow, each model call one activity.

Nothing here imports ``temporalio`` at import time, so the default install (no ``scale`` extra) is untouched;
:func:`require_temporalio` turns its absence into an error that says what to install.
"""

from __future__ import annotations

from ..errors import ConfigError

INSTALL_HINT = 'pip install "subagent-mcp[scale]"'


def require_temporalio() -> None:
    """Fail with what to install when the Temporal SDK is missing.

    Raises:
        ConfigError: ``temporalio`` is not installed.
    """
    try:
        import temporalio  # noqa: F401  # pyright: ignore[reportUnusedImport]  # only asks whether it imports
    except ImportError:
        raise ConfigError(
            f"SUBAGENT_MCP_EXECUTOR=temporal needs the Temporal SDK, which is not installed: {INSTALL_HINT} "
            "(or set SUBAGENT_MCP_EXECUTOR=embedded to run plans in this process)"
        ) from None
