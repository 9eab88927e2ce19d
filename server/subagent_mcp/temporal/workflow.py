"""A run as a Temporal workflow: the core executor schedules the DAG on workflow time; each model call is an activity.

The pure executor (``core/executor.py``) runs unchanged inside the workflow: anyio works on Temporal's
deterministic asyncio loop (its asyncio backend is loaded outside the sandbox), ``clock`` is workflow
time, ``anyio.move_on_after`` becomes a durable timer, and ``run_task`` is the embedded executor's own
(``subtask_runs.subtask_runner``: context, request, repair turn, escalation) over a backend whose every
call is an activity. So the cap, critical-path priority, skipped dependents and the budget
(``BudgetedBackend``: reserve before each call, wait or refuse) are decided here, deterministically.
Results are committed by an activity as each subtask ends; ``cancel`` (workflow cancellation) stores
what was cut short and closes the run as ``cancelled``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError

with workflow.unsafe.imports_passed_through():
    import anyio._backends._asyncio  # noqa: F401  # pyright: ignore[reportUnusedImport]  # anyio loads it lazily

    from .. import errors
    from ..backends.budgeted import BudgetedBackend
    from ..contracts import Completion, CompletionRequest, RunStatus, Spend, SubagentResult, Usage
    from ..core.estimate import expected_durations
    from ..core.executor import execute
    from ..core.pricing import cost_usd
    from ..core.run_state import ExecutorEvent, RunState, TaskFinished
    from ..runs import in_plan_order, run_budget
    from ..settings import Settings
    from ..subtask_runs import subtask_runner
    from .activities import Activities
    from .payloads import CallFailure, CallInput, FinishInput, LoggedCall, Progress, RunInput, SaveInput

T = TypeVar("T")

STORE_TIMEOUT = timedelta(minutes=2)
STORE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10), maximum_attempts=30
)
"""A store write is retried for about five minutes (a database restarting), then the workflow fails: the server
says so and resume_run continues the run. A run never goes on without its results."""


def call_retry_policy(settings: Settings) -> RetryPolicy:
    """The one retry layer for model calls: ``SUBAGENT_MCP_MAX_RETRIES`` after the first, backoff capped.

    A worker lost mid-call (its heartbeat stops) uses one attempt too.
    """
    cap = max(settings.retry_max_wait_s, 0.01)
    first = min(0.5, cap)
    return RetryPolicy(
        initial_interval=timedelta(seconds=first),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=cap),
        maximum_attempts=settings.max_retries + 1,
    )


class ActivityBackend:
    """A model backend whose every call is a ``complete`` activity; a failed one raises the ``ModelError`` it was."""

    def __init__(self, run_id: str, settings: Settings) -> None:
        self.run_id = run_id
        self.retry = call_retry_policy(settings)
        self.timeout = timedelta(seconds=settings.task_timeout_s)
        self.heartbeat = timedelta(seconds=settings.temporal_heartbeat_s)

    async def complete(self, request: CompletionRequest) -> Completion:
        handle = workflow.start_activity_method(
            Activities.complete,
            CallInput(run_id=self.run_id, request=request),
            start_to_close_timeout=self.timeout,
            heartbeat_timeout=self.heartbeat,
            retry_policy=self.retry,
            summary=request.label or request.model,
        )
        try:
            return await settled(handle, cancel=True)
        except ActivityError as exc:
            raise model_error(exc, request) from None

    async def aclose(self) -> None:
        return None


async def settled(handle: workflow.ActivityHandle[T], *, cancel: bool) -> T:
    """``handle``'s result; if the caller is cancelled, it leaves at once (and the activity is asked to stop).

    anyio delivers a cancellation again on every loop turn until the task ends, while an activity's
    cancellation resolves only in a later workflow activation: a task waiting on the handle itself
    would spin the workflow's loop forever (Temporal's deadlock detector). Waiting through a shield
    lets the task end at once.
    """
    try:
        return await asyncio.shield(handle)
    except asyncio.CancelledError:
        if cancel:
            handle.cancel()
        handle.add_done_callback(_retrieved)
        raise


def _retrieved(handle: asyncio.Future[Any]) -> None:
    """Read a left handle's outcome, so asyncio does not log it as never retrieved."""
    if not handle.cancelled():
        handle.exception()


def model_error(exc: ActivityError, request: CompletionRequest) -> errors.ModelError:
    """The ``ModelError`` an activity failed with (class, message, usage), or a timeout if its worker went silent."""
    cause = exc.cause
    if isinstance(cause, ApplicationError) and cause.details:
        failure = CallFailure.model_validate(cause.details[0])
        kind = getattr(errors, failure.kind, errors.ModelError)
        error_class = kind if isinstance(kind, type) and issubclass(kind, errors.ModelError) else errors.ModelError
        return error_class(
            cause.message,
            usage=failure.usage,
            attempts=failure.attempts,
            model=failure.model or request.model,
            status_code=failure.status_code,
            request_id=failure.request_id,
        )
    if isinstance(cause, TimeoutError):
        return errors.ModelTimeoutError(
            f"the model call's worker stopped answering ({cause.type.name if cause.type else 'timeout'}) on every "
            "attempt; are the workers running (subagent-mcp worker)?",
            model=request.model,
        )
    return errors.ModelError(f"the model call failed on Temporal: {cause or exc}", model=request.model)


@workflow.defn(name="subagent_mcp.run")
class RunWorkflow:
    """One run: every subtask scheduled by the core executor, every model call an activity, every result stored."""

    def __init__(self) -> None:
        self.state = RunState()
        self.spent = Spend()
        self.total = 0
        self.status: str | None = None

    @workflow.query(name="progress")
    def progress(self) -> Progress:
        """Where the run stands: results so far (their outputs left out: those are in the store), calls in
        flight, spend (``wait_run`` and progress notifications read this)."""
        return Progress(
            total=self.total,
            running=dict(self.state.running),
            results={task_id: r.model_copy(update={"output": None}) for task_id, r in self.state.results.items()},
            spent=self.spent,
            status=self.state.status if self.status else None,
        )

    @workflow.run
    async def run(self, run: RunInput) -> RunStatus:
        """Execute the run; its report goes to the store (outputs stay out of Temporal's history), its status here."""
        settings = Settings.model_validate(run.settings)
        plan = run.plan
        self.total = len(plan.subtasks)
        pending: dict[str, list[LoggedCall]] = {}
        saving: dict[str, workflow.ActivityHandle[None]] = {}

        async def note_usage(request: CompletionRequest, model: str, usage: Usage) -> None:
            cost = cost_usd(usage, model, settings.prices)
            pending.setdefault(request.label, []).append(LoggedCall(model=model, usage=usage, cost_usd=cost))
            self.spent += Spend(usage=usage, cost_usd=cost)

        async def save(result: SubagentResult) -> None:
            """Commit ``result`` once: a save cut short by a cancel is awaited again by ``close``, never repeated."""
            handle = saving.get(result.task_id)
            if handle is None:
                if result.task_id in run.kept:
                    return
                calls = pending.pop(result.task_id, [])
                handle = saving[result.task_id] = workflow.start_activity_method(
                    Activities.save_result,
                    SaveInput(run_id=run.run_id, result=result, calls=calls),
                    start_to_close_timeout=STORE_TIMEOUT,
                    retry_policy=STORE_RETRY,
                )
            await settled(handle, cancel=False)

        async def persist(event: ExecutorEvent) -> None:
            if isinstance(event, TaskFinished):
                await save(event.result)

        budget = run_budget(run.options, run.spent, settings.prices)
        backend = BudgetedBackend(ActivityBackend(run.run_id, settings), budget, on_usage=note_usage)
        try:
            await execute(
                plan,
                subtask_runner(plan, run.kept, backend, settings, run.roles),
                max_concurrency=run.options.max_concurrency,
                task_timeout_s=run.options.task_timeout_s,
                run_timeout_s=run.options.run_timeout_s,
                weights=None if run.estimate is None else expected_durations(run.estimate),
                on_event=persist,
                completed=run.kept,
                state=self.state,
                clock=workflow.time,
            )
        except asyncio.CancelledError:  # cancel_run: the executor marked what was cut short; store it, then end
            await self.close(run, save)
            raise
        return await self.close(run, save)

    async def close(self, run: RunInput, save: Callable[[SubagentResult], Awaitable[None]]) -> RunStatus:
        """Store the results events did not (cancelled ones), then the report; the run's last step."""
        for result in list(self.state.results.values()):
            await save(result)
        self.status = self.state.status
        finish = FinishInput(
            run_id=run.run_id,
            plan_id=run.plan.plan_id,
            status=self.state.status,
            results=in_plan_order(run.plan, self.state.results),
            makespan_s=self.state.makespan_s,
            estimate=run.estimate,
            graph=run.plan.graph(),
            options=run.options,
        )
        await workflow.execute_activity_method(
            Activities.finish_run, finish, start_to_close_timeout=STORE_TIMEOUT, retry_policy=STORE_RETRY
        )
        return self.state.status
