"""A backend decorator that checks a run's ``Budget`` before every call and charges what each used."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from ..contracts import Completion, CompletionRequest, Usage
from ..core.budget import Budget
from ..core.context import estimate_tokens
from ..errors import ModelError
from .base import ModelBackend

PROMPT_SAFETY = 1.2
"""The budget's margin on a prompt's estimated size: code or JSON can tokenize denser than 3.5 chars a token."""


def request_input_tokens(request: CompletionRequest) -> int:
    """Estimated prompt tokens of ``request``: system, messages and the output schema the API is sent."""
    text = request.system + "".join(m.content for m in request.messages) + json.dumps(request.output_schema)
    return estimate_tokens(text)


def reserved_prompt_tokens(request: CompletionRequest) -> int:
    """The prompt size the budget holds for ``request``: the estimate with ``PROMPT_SAFETY`` on top."""
    return math.ceil(request_input_tokens(request) * PROMPT_SAFETY)


@dataclass
class BudgetedBackend:
    """Refuses a call whose worst case could cross the budget (nothing is sent); charges every attempt."""

    inner: ModelBackend
    budget: Budget

    async def complete(self, request: CompletionRequest) -> Completion:
        reservation = self.budget.reserve(request.model, reserved_prompt_tokens(request), request.max_tokens)
        try:
            completion = await self.inner.complete(request)
        except ModelError as exc:
            self.budget.settle(reservation, exc.model or request.model, exc.usage)
            raise
        except BaseException:  # cancelled or crashed: nothing billed that we know of
            self.budget.settle(reservation, request.model, Usage())
            raise
        self.budget.settle(reservation, completion.model, completion.usage)
        return completion

    async def aclose(self) -> None:
        """The inner backend belongs to the service; closing a run's view of it does nothing."""
        return None
