"""The one seam through which a model is called.

A backend turns a ``CompletionRequest`` into a ``Completion`` or raises a ``ModelError`` subclass
(``errors.py``) carrying the usage and attempts it spent. Retrying transient failures is the
backend's business; validating the JSON and the repair turn are not (see ``structured.py``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..contracts import Completion, CompletionRequest


@runtime_checkable
class ModelBackend(Protocol):
    """Anything that can answer a completion request."""

    async def complete(self, request: CompletionRequest) -> Completion: ...

    async def aclose(self) -> None: ...
