"""The one seam through which a model is called.

A backend turns a ``CompletionRequest`` into a ``Completion`` or raises a ``ModelError`` subclass
(``errors.py``) carrying the usage and attempts it spent. Retrying transient failures is the
backend's business; validating the JSON and the repair turn are not (see ``structured.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Protocol, runtime_checkable

from ..contracts import Completion, CompletionRequest


@runtime_checkable
class ModelBackend(Protocol):
    """Anything that can answer a completion request."""

    async def complete(self, request: CompletionRequest) -> Completion: ...

    async def aclose(self) -> None: ...


ContinuationCheck = Callable[[Completion, int], Awaitable[None]]
"""Asked before a ``pause_turn`` continuation is sent, with the paused message just billed and the tokens the
continuation adds to the prompt; raises ``BudgetExceededError`` (attempts 0) if the next message may not go."""

continuation_check: ContextVar[ContinuationCheck | None] = ContextVar("continuation_check", default=None)
"""Set by the budget (``budgeted.py``) around a call, so each message of a continued turn is reserved for, not one."""
