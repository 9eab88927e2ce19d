"""One subagent call: a subtask's request through the structured-output loop, as a result with its usage.

Failures are data here too: a failed call becomes a ``failed`` result carrying what it spent, and a
call the run's budget refused before sending anything becomes ``skipped`` (reason: budget).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from .backends.base import ModelBackend
from .contracts import CompletionRequest, SubagentResult, Subtask
from .core.pricing import ModelPrice, cost_usd
from .errors import BudgetExceededError, ModelError
from .structured import complete_json


async def run_subtask(
    backend: ModelBackend, subtask: Subtask, request: CompletionRequest, prices: Mapping[str, ModelPrice]
) -> SubagentResult:
    """Send ``request`` (built for ``subtask``) and return the subtask's result, priced with ``prices``."""
    started = time.monotonic()
    try:
        out = await complete_json(backend, request)
    except ModelError as exc:
        refused = isinstance(exc, BudgetExceededError) and exc.attempts == 0
        model = exc.model or request.model
        return SubagentResult(
            task_id=subtask.id,
            role=subtask.role,
            status="skipped" if refused else "failed",
            error=str(exc),
            attempts=exc.attempts,
            usage=exc.usage,
            cost_usd=cost_usd(exc.usage, model, prices),
            model=model,
            duration_s=time.monotonic() - started,
        )
    return SubagentResult(
        task_id=subtask.id,
        role=subtask.role,
        status="succeeded",
        output=out.output,
        attempts=out.attempts,
        usage=out.usage,
        cost_usd=cost_usd(out.usage, out.model, prices),
        model=out.model,
        duration_s=time.monotonic() - started,
    )
