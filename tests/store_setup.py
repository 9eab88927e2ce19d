"""What tests that create runs in a store directly share: options for a run whose options the test does not read."""

from __future__ import annotations

from subagent_mcp.run_options import RunOptions

OPTIONS = RunOptions(max_concurrency=4, task_timeout_s=60.0, run_timeout_s=600.0)
