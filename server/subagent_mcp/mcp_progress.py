"""Executor events as MCP progress notifications and log messages.

Progress only reaches a client that sent a progress token; log messages only one that opted in
(``logLevel`` in the 2026 envelope). Both are best effort: a dropped notification never fails a run.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from mcp.server.mcpserver import Context
from mcp.shared.exceptions import MCPDeprecationWarning

from .core.run_state import ExecutorEvent, TaskFinished, TaskStarted

log = logging.getLogger(__name__)


class ProgressReporter:
    """Turns executor events into ``notifications/progress`` (monotonic) and log lines.

    ``offset`` and ``extra_steps`` let a caller wrap a run in other steps (orchestrate: plan first,
    synthesis last) while the progress value only ever rises.
    """

    def __init__(self, ctx: Context[Any, Any], offset: int = 0, extra_steps: int = 0) -> None:
        self.ctx = ctx
        self.offset = offset
        self.extra_steps = extra_steps
        self.last = 0

    async def step(self, done: int, total: int, message: str) -> None:
        """Report ``done`` of ``total`` steps (never lower than already reported)."""
        self.last = max(self.last, done)
        try:
            await self.ctx.report_progress(self.last, total, message)
        except Exception:  # a gone client must not fail the run
            log.debug("progress notification not delivered", exc_info=True)
        await self.log(message)

    async def log(self, message: str, level: str = "info") -> None:
        log.info("%s", message)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await self.ctx.log(level, message, logger_name="subagent_mcp")  # type: ignore[arg-type]
        except Exception:
            log.debug("log notification not delivered", exc_info=True)

    async def __call__(self, event: ExecutorEvent) -> None:
        counts = event.counts
        total = counts.total + self.offset + self.extra_steps
        done = counts.done + self.offset
        if isinstance(event, TaskStarted):
            await self.step(done, total, f"started {event.task_id} ({counts})")
        elif isinstance(event, TaskFinished):
            r = event.result
            why = f": {r.error}" if r.error and r.status != "succeeded" else ""
            await self.step(done, total, f"{r.task_id} {r.status}{why} ({counts})")
        else:
            await self.step(done, total, f"run {event.status} ({counts})")
