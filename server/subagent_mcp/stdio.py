"""Serve MCP over stdio until the host closes stdin, or one Ctrl-C / SIGTERM stops it cleanly.

The SDK reads stdin in a worker thread that a cancellation cannot interrupt, so a stopped server
would hang until stdin closed; here a daemon thread reads it instead, and a signal cancels the
server like a closed stdin does: the lifespan ends, runs in flight are stored ``interrupted``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator
from typing import Any, cast

import anyio
import anyio.abc
import anyio.from_thread
import anyio.lowlevel
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server

log = logging.getLogger(__name__)

EXIT_INTERRUPTED = 130
TERMINAL_HINT = (
    "subagent-mcp: this server waits for an MCP host (Claude Desktop, Claude Code, ...) to talk to it on stdin, "
    "so what you type here does nothing. To try it from the terminal instead: "
    'subagent-mcp run --demo "Compare SQLite and Postgres for a desktop app"'
)


class StdinLines:
    """The lines of a file descriptor as text, read by a daemon thread so no cancellation waits on it.

    Reads the raw descriptor (no buffered file object), so a reader still blocked at interpreter exit
    holds no lock that shutdown needs.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __aiter__(self) -> AsyncIterator[str]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[str]:
        send, receive = anyio.create_memory_object_stream[bytes](16)
        token = anyio.lowlevel.current_token()

        def pump() -> None:
            pending = b""
            try:
                while chunk := os.read(self.fd, 65536):
                    *lines, pending = (pending + chunk).split(b"\n")
                    for line in lines:
                        anyio.from_thread.run(send.send, line + b"\n", token=token)
                if pending:
                    anyio.from_thread.run(send.send, pending, token=token)
            except Exception:  # the loop is gone (shutdown) or the descriptor broke: stop reading
                pass
            finally:
                with contextlib.suppress(Exception):
                    anyio.from_thread.run_sync(send.close, token=token)

        threading.Thread(target=pump, name="stdin reader", daemon=True).start()
        async with receive:
            async for line in receive:
                yield line.decode("utf-8", errors="replace")


async def serve_stdio(server: MCPServer[Any]) -> int:
    """Serve until stdin closes (exit 0), SIGTERM (0) or Ctrl-C (130); never a traceback for either."""
    stopped_by: list[int] = []
    async with anyio.create_task_group() as tg:

        async def stop_on_signal(*, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                task_status.started()
                async for signum in signals:
                    stopped_by.append(signum)
                    log.info("stopping: runs in flight are stored as interrupted (resume_run continues them)")
                    tg.cancel_scope.cancel()
                    return

        await tg.start(stop_on_signal)
        stdin = cast(Any, StdinLines(sys.stdin.fileno()))
        lowlevel = server._lowlevel_server
        async with stdio_server(stdin=stdin) as (read_stream, write_stream):
            log.info("serving MCP on stdio (Ctrl-C stops)")
            if os.isatty(sys.stdin.fileno()):  # a person started it by hand: say why nothing happens
                print(TERMINAL_HINT, file=sys.stderr, flush=True)
            await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
        tg.cancel_scope.cancel()
    return EXIT_INTERRUPTED if signal.SIGINT in stopped_by else 0
