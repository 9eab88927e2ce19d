"""A run's progress as MCP progress notifications and log messages.

Progress only reaches a client that sent a progress token; log messages only one that wants them at
their level (``mcp_logging``: ``logging/setLevel``, or ``logLevel`` in the 2026 envelope). Failures
are logged as warnings, the rest as info. Both are best effort: a dropped notification never fails a run.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from mcp.server.mcpserver import Context
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.types import LoggingLevel

from .mcp_logging import client_wants
from .visible import visible

log = logging.getLogger(__name__)


class ProgressReporter:
    """One tool call's view of a run: ``notifications/progress`` (never falling) and log lines.

    A background run tells every caller waiting on it through ``step``; each caller's values only
    ever rise, even if it joined late or hears a heartbeat repeat the last step.
    """

    def __init__(self, ctx: Context[Any, Any]) -> None:
        self.ctx = ctx
        self.last = 0

    async def step(self, done: int, total: int | None, message: str, level: LoggingLevel = "info") -> None:
        """Report ``done`` of ``total`` steps (``None`` while unknown), never lower than already reported.

        ``message`` may quote a model's error: hosts draw it, so its control characters are made visible."""
        self.last = max(self.last, done)
        message = visible(message, one_line=True)
        try:
            await self.ctx.report_progress(self.last, total, message)
        except Exception:  # a gone client must not fail the run
            log.debug("progress notification not delivered", exc_info=True)
        await self.log(message, level)

    async def log(self, message: str, level: LoggingLevel = "info") -> None:
        message = visible(message, one_line=True)
        log.info("%s", message)
        try:
            if not client_wants(self.ctx.request_context.session, level):
                return
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await self.ctx.log(level, message, logger_name="subagent_mcp")  # pyright: ignore[reportDeprecated]
        except Exception:
            log.debug("log notification not delivered", exc_info=True)
