"""A live progress line for ``subagent-mcp run``: tasks done/running/failed, tokens and cost, on stderr.

On a terminal the line redraws in place; piped, it prints one line per event, so logs stay readable.
Every text passes ``visible`` first: plans and errors quote model text, which may hold escape sequences.
"""

from __future__ import annotations

import sys
from typing import TextIO

from .contracts import Usage
from .core.run_state import ExecutorEvent, TaskFinished, TaskStarted
from .visible import visible


class TerminalProgress:
    """Renders executor events; also reused for the plan and synthesis steps via ``note``."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.usage = Usage()
        self.cost = 0.0
        self._drawn = False

    def note(self, message: str) -> None:
        """A line that stays (planning, synthesis, interruption)."""
        self._clear()
        self._line(message)

    def add_usage(self, usage: Usage, cost: float) -> None:
        self.usage, self.cost = self.usage + usage, self.cost + cost

    def __call__(self, event: ExecutorEvent) -> None:
        if isinstance(event, TaskFinished):
            self.add_usage(event.result.usage, event.result.cost_usd)
            r = event.result
            error = " ".join(r.error.split()) if r.error and r.status != "succeeded" else ""
            last = f"{r.task_id} {r.status}" + (f": {error}" if error else "")
        elif isinstance(event, TaskStarted):
            last = f"started {event.task_id}"
        else:
            last = f"run {event.status}"
        line = visible(f"[{event.counts}] {self.usage.total_tokens:,} tokens ${self.cost:.4f} | {last}", one_line=True)
        if self.live:
            self._clear()
            self.stream.write(line[:200])
            self._drawn = True
            self.stream.flush()
        else:
            self._line(line)

    def _line(self, text: str) -> None:
        self.stream.write(visible(text) + "\n")
        self.stream.flush()

    def _clear(self) -> None:
        if self.live and self._drawn:
            self.stream.write("\r\033[K")
            self._drawn = False
