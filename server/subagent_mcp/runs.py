"""Durable execution: run a plan through the executor and commit each result the moment it is final.

A crash loses at most the tasks in flight; a resumed run keeps every stored success and runs the
rest. Every model call's usage reaches the store (``UsageLedger``), so the report's usage and cost,
read from the store, cover every attempt of the run: repair turns, calls of tasks later cancelled,
and earlier sessions.
"""

from __future__ import annotations

import inspect
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import anyio

from .contracts import Plan, PlanEstimate, RunReport, Spend, SubagentResult, Usage
from .core.budget import Budget, Limits, overshoot
from .core.estimate import expected_durations
from .core.executor import RunTask, execute, root_error
from .core.pricing import ModelPrice
from .core.run_state import ExecutorEvent, OnEvent, RunState, TaskFinished, progress_of
from .errors import InputError
from .handles import Phase, RunCounts, RunHandle
from .redact import all_forms, redact
from .run_options import RunOptions
from .store import RunRecord, Store, StoreError

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 200
"""How much of an internal error's message a run's ``error`` quotes (the server log has it whole)."""


def new_run_id() -> str:
    """A fresh, unguessable run id."""
    return f"run-{uuid.uuid4().hex[:12]}"


def check_same_backend(run_id: str, options: RunOptions, demo: bool) -> None:
    """Refuse to resume a demo run on real models (they would finish scripted work, billed) or the reverse."""
    if options.demo and not demo:
        raise InputError(
            f"run {run_id!r} is a demo run (scripted outputs, nothing billed); resume it in demo mode: "
            f"subagent-mcp run --demo --resume {run_id}, or a server started with --demo"
        )
    if demo and not options.demo:
        raise InputError(f"run {run_id!r} ran on real models; resume it without --demo, or it would end in demo output")


OnSpend = Callable[[Spend], None]
"""Told of each finished model call's cost as it ends (a live run's spend so far)."""


def run_budget(options: RunOptions, spent: Spend, prices: Mapping[str, ModelPrice]) -> Budget:
    """A run's budget: its ceilings, with what was spent before it and by it so far, and the room held back."""
    total = options.prior_spend + spent
    limits = Limits(max_cost_usd=options.max_cost_usd, max_total_tokens=options.max_total_tokens)
    return Budget(limits, prices, spent=total.usage, spent_usd=total.cost_usd, held=options.held_back)


Call = tuple[str, Usage, float]
"""One finished model call: model, usage, cost in USD."""


@dataclass
class UsageLedger:
    """Each finished model call's usage, per task, until the task's result is saved (no I/O here).

    A task that ends normally carries its calls' usage in its result, saved with it in one
    transaction. A task cut short (timed out, cancelled) has none in its result, so its ledger
    entries are logged instead: billed attempts are never lost, and no call is counted twice.
    """

    pending: dict[str, list[tuple[str, Usage, float]]] = field(
        default_factory=dict[str, list[tuple[str, Usage, float]]]
    )

    def note(self, task_id: str, model: str, usage: Usage, cost_usd: float) -> None:
        self.pending.setdefault(task_id, []).append((model, usage, cost_usd))

    async def save(self, store: Store, run_id: str, result: SubagentResult) -> None:
        """Commit ``result`` and the usage of every call made for it (kept pending if the store fails)."""
        calls = self.pending.get(result.task_id, [])
        if result.usage.total_tokens or not calls:
            await store.save_result(run_id, result)
        else:
            await store.save_result(run_id, result, record_usage=False)
            for model, usage, cost in calls:
                await store.log_usage(run_id, result.task_id, model, usage, cost)
        self.pending.pop(result.task_id, None)

    def unsaved(self) -> Spend:
        """What calls whose results are not stored yet were billed."""
        calls = [call for task_calls in self.pending.values() for call in task_calls]
        return sum((Spend(usage=usage, cost_usd=cost) for _, usage, cost in calls), Spend())


async def execute_durably(
    store: Store,
    plan: Plan,
    run_id: str,
    run_task: RunTask,
    options: RunOptions,
    *,
    ledger: UsageLedger,
    estimate: PlanEstimate | None = None,
    on_event: OnEvent | None = None,
    completed: Mapping[str, SubagentResult] | None = None,
    secrets: Sequence[str] = (),
) -> RunReport:
    """Execute ``plan`` as run ``run_id`` (already created in ``store``), saving every final result.

    With an ``estimate``, ready tasks are ordered by the longest remaining path in expected durations.

    On host cancellation the unsaved results (the cancelled ones) are saved and the run is closed
    as ``cancelled`` under a shield, then the cancellation goes on. An internal error (a bug) is
    logged with its traceback and the run closed ``failed``, its report's ``error`` saying so (with
    ``secrets`` redacted); what finished is kept, so a resume runs the rest.

    Raises:
        StoreError: the store failed (a full disk): the run was stopped at once, marked ``interrupted``
            if the store still allows it, and the message says what was billed but not stored.
    """
    seeded = dict(completed or {})
    saved: set[str] = set(seeded)
    failures: list[StoreError] = []
    stop = anyio.CancelScope()  # a store that cannot keep results stops the run: no more money is spent

    async def save(result: SubagentResult) -> None:
        if result.task_id in saved or failures:
            return
        try:
            await ledger.save(store, run_id, result)
        except StoreError as exc:
            failures.append(exc)
            stop.cancel()
            return
        saved.add(result.task_id)

    async def persist(event: ExecutorEvent) -> None:
        if isinstance(event, TaskFinished):
            await save(event.result)
        if on_event is not None:
            outcome = on_event(event)
            if inspect.isawaitable(outcome):
                await outcome

    state = RunState()

    async def close(error: str | None = None) -> RunReport:
        """Save what the events did not (cancelled tasks), then record the report; never interrupted."""
        report: RunReport | None = None
        with anyio.CancelScope(shield=True):
            for result in list(state.results.values()):
                await save(result)
            if not failures:
                report = await build_report(store, plan, run_id, state, estimate, options)
                if error is not None:
                    report = report.model_copy(update={"status": "failed", "error": error})
                try:
                    await store.finish_run(run_id, report)
                except StoreError as exc:
                    failures.append(exc)
            if failures:
                raise await _stopped_by_store(store, run_id, failures[0], ledger.unsaved())
        assert report is not None  # a shielded scope is never cancelled
        return report

    try:
        with stop:
            await execute(
                plan,
                run_task,
                max_concurrency=options.max_concurrency,
                task_timeout_s=options.task_timeout_s,
                run_timeout_s=options.run_timeout_s,
                weights=None if estimate is None else expected_durations(estimate),
                on_event=persist,
                completed=seeded,
                state=state,
            )
    except Exception as exc:  # not a cancellation: a bug stopped the run, which nobody cancelled
        log.exception("run %s was stopped by an internal error; what finished is kept", run_id)
        return await close(internal_error(run_id, exc, secrets))
    except BaseException:
        await close()
        raise
    return await close()


def internal_error(run_id: str, exc: BaseException, secrets: Sequence[str]) -> str:
    """What a run a bug stopped says: the error's type and the start of its message, ``secrets`` redacted."""
    cause = root_error(exc)
    try:
        said = str(cause)
    except Exception:  # the bug may be in the error itself
        said = "its message cannot be read"
    said = " ".join(redact(said, all_forms(secrets)).split())
    if len(said) > MAX_ERROR_CHARS:
        said = said[: MAX_ERROR_CHARS - 1] + "…"
    what = f"{type(cause).__name__}: {said}" if said else type(cause).__name__
    return (
        f"an internal error stopped the run ({what}); the server log has its traceback. What finished is kept: "
        f"resume_run(run_id={run_id!r}) runs the rest."
    )


async def _stopped_by_store(store: Store, run_id: str, failure: StoreError, unsaved: Spend) -> StoreError:
    """Mark a run the store failed ``interrupted`` (if it still can) and say what was billed but not stored."""
    try:
        await store.interrupt_runs([run_id])
        state = "is stored as interrupted"
    except StoreError:
        state = "could not be marked interrupted either (resume_run takes it over)"
    billed = f"{unsaved.usage.input_tokens:,} in / {unsaved.usage.output_tokens:,} out tokens, ${unsaved.cost_usd:.4f}"
    return StoreError(
        f"{failure} Run {run_id} was stopped so that nothing more is spent, and {state}. Billed but not "
        f"stored: {billed}. Once the database can be written again, resume_run(run_id={run_id!r}) runs "
        "the subtasks whose results were lost.",
        failure.path,
    )


async def build_report(
    store: Store, plan: Plan, run_id: str, state: RunState, estimate: PlanEstimate | None, options: RunOptions
) -> RunReport:
    """The run's report in plan order, with usage and cost as the store logged them (every attempt).

    ``options`` are the ceilings it ran under: a run that billed past them says so (``RunReport.over_budget``).
    """
    record = await store.get_run(run_id)
    if record is None:  # created before the run started; only a database changed under us loses it
        raise StoreError(f"run {run_id} is no longer in the database; was the file replaced or edited while it ran?")
    return RunReport(
        run_id=run_id,
        plan_id=plan.plan_id,
        status=state.status,
        results=in_plan_order(plan, state.results),
        usage=record.usage,
        cost_usd=round(record.cost_usd, 8),
        makespan_s=state.makespan_s,
        estimate=estimate,
        graph=plan.graph(),
        over_budget=billed_over(options, Spend(usage=record.usage, cost_usd=record.cost_usd)),
    )


def billed_over(options: RunOptions, spent: Spend) -> str | None:
    """``core.budget.overshoot`` of a run that spent ``spent`` under ``options`` (planning counted)."""
    limits = Limits(max_cost_usd=options.max_cost_usd, max_total_tokens=options.max_total_tokens)
    return overshoot(limits, options.prior_spend + spent)


def in_plan_order(plan: Plan, results: Mapping[str, SubagentResult]) -> list[SubagentResult]:
    """``results`` in the plan's subtask order (tasks with no result are left out)."""
    return [results[s.id] for s in plan.subtasks if s.id in results]


def stored_counts(plan: Plan, record: RunRecord) -> RunCounts:
    """A stored run's progress from its saved results (what it had not finished counts as pending)."""
    tally = {status: 0 for status in ("succeeded", "failed", "skipped", "cancelled")}
    for result in record.results.values():
        tally[result.status] += 1
    done = len(record.results)
    return RunCounts(total=len(plan.subtasks), done=done, pending=len(plan.subtasks) - done, **tally)


def stored_handle(
    plan: Plan, record: RunRecord, status: Literal["running", "interrupted"], next_step: str, phase: Phase = None
) -> RunHandle:
    """A handle on a run as the store has it (not live in this server): its saved results, spend and what to call."""
    return RunHandle(
        run_id=record.run_id,
        status=status,
        phase=phase,
        plan_id=plan.plan_id,
        counts=stored_counts(plan, record),
        spent=record.total,
        next=next_step,
        tasks=progress_of(plan.subtasks, record.results),
    )
