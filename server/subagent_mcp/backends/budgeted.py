"""A backend decorator that checks a run's ``Budget`` before every call and charges what each used."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from ..contracts import Completion, CompletionRequest, Usage
from ..core.budget import PROMPT_SAFETY, Budget, Reservation
from ..core.context import estimate_tokens
from ..errors import ModelError
from .base import ModelBackend


def request_input_tokens(request: CompletionRequest) -> int:
    """Estimated prompt tokens of ``request``: system, messages and the output schema the API is sent."""
    text = request.system + "".join(m.content for m in request.messages) + json.dumps(request.output_schema)
    return estimate_tokens(text)


def reserved_prompt_tokens(request: CompletionRequest) -> int:
    """The prompt size the budget holds for ``request``: the estimate with ``PROMPT_SAFETY`` on top."""
    return math.ceil(request_input_tokens(request) * PROMPT_SAFETY)


OnUsage = Callable[[CompletionRequest, str, Usage], Awaitable[None]]
"""Told of every finished call's usage (request, model, usage), e.g. to log it durably at once."""


@dataclass
class BudgetedBackend:
    """Refuses a call whose worst case could cross the budget (nothing is sent); charges every attempt.

    ``on_usage`` hears of each call as it ends, so a task cancelled during its repair turn still has
    its first, billed attempt on record (``runs.UsageLedger``).
    """

    inner: ModelBackend
    budget: Budget
    on_usage: OnUsage | None = None

    async def complete(self, request: CompletionRequest) -> Completion:
        reservation = self.budget.reserve(request.model, reserved_prompt_tokens(request), request.max_tokens)
        try:
            completion = await self.inner.complete(request)
        except ModelError as exc:
            await self._charge(reservation, request, exc.model or request.model, exc.usage)
            raise
        except BaseException:  # cancelled or crashed: nothing billed that we know of
            self.budget.settle(reservation, request.model, Usage())
            raise
        await self._charge(reservation, request, completion.model, completion.usage)
        return completion

    async def _charge(self, reservation: Reservation, request: CompletionRequest, model: str, usage: Usage) -> None:
        self.budget.settle(reservation, model, usage)
        if self.on_usage is not None and usage.total_tokens:
            with anyio.CancelScope(shield=True):  # what was billed is recorded even if the caller is cancelled
                await self.on_usage(request, model, usage)

    async def aclose(self) -> None:
        """The inner backend belongs to the service; closing a run's view of it does nothing."""
        return None
