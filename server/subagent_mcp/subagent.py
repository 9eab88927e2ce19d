"""One subagent call: a subtask's request through the structured-output loop, as a result with its usage.

Failures are data here too: a failed call becomes a ``failed`` result carrying what it spent, and a
call the run's budget refused before sending anything becomes ``skipped`` (reason: budget).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from .backends.base import ModelBackend
from .backends.budgeted import billed_model
from .contracts import CompletionRequest, SubagentResult, Subtask
from .core.pricing import ModelPrice, cost_usd
from .errors import BudgetExceededError, ModelError, ModelOutputError
from .structured import complete_json


async def run_subtask(
    backend: ModelBackend,
    subtask: Subtask,
    request: CompletionRequest,
    prices: Mapping[str, ModelPrice],
    escalate_to: str | None = None,
) -> SubagentResult:
    """Send ``request`` (built for ``subtask``) and return the subtask's result, priced with ``prices``.

    With ``escalate_to``, output still invalid after its repair turn is tried once more on that model;
    the result counts both tries' attempts, usage and cost, and names the model that answered.
    """
    started = time.monotonic()
    try:
        out = await complete_json(backend, request)
    except ModelOutputError as exc:
        if escalate_to is None:
            return _failed(subtask, request, exc, prices, started)
        first = SubagentResult(
            task_id=subtask.id, role=subtask.role, status="failed", attempts=exc.attempts, usage=exc.usage,
            cost_usd=cost_usd(exc.usage, billed_model(exc.model, request.model, prices), prices),
        )  # fmt: skip
        again = await run_subtask(backend, subtask, request.model_copy(update={"model": escalate_to}), prices)
        if again.status == "skipped":  # the budget refused the escalation: the first try's failure stands
            failed = _failed(subtask, request, exc, prices, started)
            return failed.model_copy(update={"error": f"{failed.error}; not escalated to {escalate_to}: {again.error}"})
        return again.model_copy(
            update={
                "attempts": first.attempts + again.attempts,
                "usage": first.usage + again.usage,
                "cost_usd": round(first.cost_usd + again.cost_usd, 8),
                "escalated_from": exc.model or request.model,
                "duration_s": time.monotonic() - started,
            }
        )
    except ModelError as exc:
        return _failed(subtask, request, exc, prices, started)
    return SubagentResult(
        task_id=subtask.id,
        role=subtask.role,
        status="succeeded",
        output=out.output,
        attempts=out.attempts,
        usage=out.usage,
        cost_usd=cost_usd(out.usage, billed_model(out.model, request.model, prices), prices),
        model=out.model,
        duration_s=time.monotonic() - started,
    )


def _failed(
    subtask: Subtask, request: CompletionRequest, exc: ModelError, prices: Mapping[str, ModelPrice], started: float
) -> SubagentResult:
    """A failed call as a result; one the budget refused before sending anything is ``skipped``."""
    refused = isinstance(exc, BudgetExceededError) and exc.attempts == 0
    model = exc.model or request.model
    return SubagentResult(
        task_id=subtask.id,
        role=subtask.role,
        status="skipped" if refused else "failed",
        error=str(exc),
        attempts=exc.attempts,
        usage=exc.usage,
        cost_usd=cost_usd(exc.usage, billed_model(model, request.model, prices), prices),
        model=model,
        duration_s=time.monotonic() - started,
    )
