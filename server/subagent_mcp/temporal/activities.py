"""The activities a worker runs: one model call, saving a subtask's result, closing the run in the store.

Retries live in one layer: Temporal's activity retry policy (``workflow.py``). The worker's backend is
built with ``max_retries=0`` (no tenacity retry) on an SDK client that has ``max_retries=0`` too, so a
transient failure (429, 5xx, connection, timeout) fails this attempt at once and Temporal schedules the
next one, obeying ``retry-after`` when the API sent one. Failures that no retry heals (a 400, a refusal,
an unusable reply) are raised non-retryable. A long call heartbeats, so cancelling the workflow reaches
it and a dead worker's call is retried on another worker after ``SUBAGENT_MCP_TEMPORAL_HEARTBEAT_S``.
"""

from __future__ import annotations

import anyio
from temporalio import activity
from temporalio.exceptions import ApplicationError

from ..backends.base import ModelBackend
from ..contracts import Completion, RunReport, Spend
from ..errors import ModelError, ModelTimeoutError, ModelUnavailableError
from ..runs import billed_over
from ..store import Store
from .payloads import CallFailure, CallInput, FinishInput, SaveInput

RETRYABLE = (ModelUnavailableError, ModelTimeoutError)
"""What another attempt may heal: rate limits, overload, connection failures, timeouts."""


class Activities:
    """Activities bound to one worker's store and backend (behind the worker's limit on calls in flight)."""

    def __init__(self, store: Store, backend: ModelBackend, heartbeat_s: float) -> None:
        self.store = store
        self.backend = backend
        self.beat_every_s = heartbeat_s / 4

    @activity.defn(name="subagent_mcp.complete")
    async def complete(self, call: CallInput) -> Completion:
        """One model call, heartbeating while it waits; its failure as an ``ApplicationError`` the workflow reads."""
        outcome: Completion | ModelError | None = None
        async with anyio.create_task_group() as tg:  # raise outside it: a task group wraps what leaves it
            tg.start_soon(self._heartbeat)
            try:
                outcome = await self.backend.complete(call.request)
            except ModelError as exc:
                outcome = exc
            finally:
                tg.cancel_scope.cancel()
        if isinstance(outcome, ModelError):
            raise _application_error(outcome) from None
        assert outcome is not None  # the group ends once the call returned (or raised)
        return outcome

    async def _heartbeat(self) -> None:
        while True:
            activity.heartbeat()
            await anyio.sleep(self.beat_every_s)

    @activity.defn(name="subagent_mcp.save_result")
    async def save_result(self, save: SaveInput) -> None:
        """Commit a final result with the usage of every call made for it (as ``runs.UsageLedger`` does)."""
        result = save.result
        if result.usage.total_tokens or not save.calls:
            await self.store.save_result(save.run_id, result)
            return
        await self.store.save_result(save.run_id, result, record_usage=False)
        for call in save.calls:
            await self.store.log_usage(save.run_id, result.task_id, call.model, call.usage, call.cost_usd)

    @activity.defn(name="subagent_mcp.finish_run")
    async def finish_run(self, finish: FinishInput) -> None:
        """Record the run's report, its usage and cost read from the store (every attempt, every session).

        The report stays in the store, not in Temporal's history: the server reads it from there.
        """
        record = await self.store.get_run(finish.run_id)
        if record is None:
            raise ApplicationError(f"run {finish.run_id} is not in the database", non_retryable=True)
        spent = Spend(usage=record.usage, cost_usd=record.cost_usd)
        report = RunReport(
            run_id=finish.run_id,
            plan_id=finish.plan_id,
            status=finish.status,
            results=finish.results,
            usage=record.usage,
            cost_usd=round(record.cost_usd, 8),
            makespan_s=finish.makespan_s,
            estimate=finish.estimate,
            graph=finish.graph,
            over_budget=None if finish.options is None else billed_over(finish.options, spent),
        )
        await self.store.finish_run(finish.run_id, report)


def _application_error(exc: ModelError) -> ApplicationError:
    """``exc`` for Temporal: retryable or not, with what it spent (a retry-after pauses the worker's gate)."""
    failure = CallFailure(
        kind=type(exc).__name__,
        usage=exc.usage,
        attempts=activity.info().attempt,
        model=exc.model,
        status_code=exc.status_code,
        request_id=exc.request_id,
    )
    return ApplicationError(
        str(exc), failure.model_dump(mode="json"), type=failure.kind, non_retryable=not isinstance(exc, RETRYABLE)
    )
