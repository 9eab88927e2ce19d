"""Running plans: check and create a run, execute it durably, resume it, or start it in the background.

A mixin of ``Service``: it reads the service's settings, roles, store, backend and run registry.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry.trace import Span

from .arguments import check_ceilings, in_range
from .backends.base import ModelBackend
from .backends.budgeted import BudgetedBackend
from .backends.traced import TracedBackend
from .background import CANCELLED_WHILE_PLANNING, LiveRun, RunRegistry, shown_id, stopped_while_planning
from .batch_runs import (
    batch_backend,
    batch_cap,
    batch_mode,
    batch_timeout,
    cancel_batches,
    check_batch_backend,
    note_batch_discount,
)
from .contracts import (
    MAX_PLAN_ID_CHARS,
    CompletionRequest,
    OrchestrateResult,
    Plan,
    PlanEstimate,
    RunReport,
    Spend,
    SubagentResult,
    Subtask,
    Synthesis,
    Usage,
)
from .core.budget import room_for
from .core.pricing import batch_prices, cost_usd
from .core.run_state import OnEvent
from .errors import InputError
from .handles import RunHandle
from .logs import secret_values
from .planning import (
    check_runnable,
    check_schemas,
    estimate_plan,
)
from .roles import Role
from .run_options import RunOptions
from .runs import OnSpend, UsageLedger, check_same_backend, execute_durably, new_run_id, run_budget
from .settings import Settings
from .store import Store
from .subtask_runs import subtask_runner
from .telemetry import Telemetry
from .temporal_runs import TemporalRuns


def unknown_run(run_id: str) -> InputError:
    """The one answer to a run id that no stored run has (the id cut short, no database path)."""
    return InputError(
        f"no run with id {shown_id(run_id)} is stored; list_runs (or `subagent-mcp runs`) shows the recent ones"
    )


@dataclass
class _Run:
    """A run ready to execute: its plan, id and options, estimate, and what earlier attempts kept and spent."""

    plan: Plan
    run_id: str
    options: RunOptions
    estimate: PlanEstimate
    kept: Mapping[str, SubagentResult] = field(default_factory=dict[str, SubagentResult])
    spent: Spend = field(default_factory=Spend)
    synthesis: Synthesis | None = None
    """The synthesis stored since the run last finished, before this take-over (it answers the kept results)."""

    def reusable_synthesis(self) -> Synthesis | None:
        """The stored synthesis, if every subtask was kept: nothing is left to run, so it still answers the run."""
        return self.synthesis if len(self.kept) == len(self.plan.subtasks) else None


class Execution(TemporalRuns):
    """The run use cases of ``Service``; see the module docstring."""

    if TYPE_CHECKING:
        settings: Settings
        store: Store
        runs: RunRegistry
        roles: dict[str, Role]
        telemetry: Telemetry
        backend_override: ModelBackend | None

        @property
        def backend(self) -> ModelBackend: ...

        def estimate(self, plan: Plan) -> PlanEstimate: ...

        async def outcome(self, run_id: str) -> RunReport | OrchestrateResult | RunHandle: ...

        async def resume_orchestration(
            self,
            plan: Plan,
            options: RunOptions,
            run: Callable[[], Awaitable[RunReport]],
            live: LiveRun,
            reuse: Synthesis | None = None,
        ) -> OrchestrateResult: ...

    def no_run(self, run_id: str) -> InputError:
        """The answer to an id no stored run has: a run this server stopped while planning says so."""
        if stopped_while_planning(self.runs.get(run_id)):
            return InputError(f"run {shown_id(run_id)}: {CANCELLED_WHILE_PLANNING}")
        return unknown_run(run_id)

    async def execute_plan(
        self,
        plan: Plan | None = None,
        plan_id: str | None = None,
        max_concurrency: int | None = None,
        timeout_s: float | None = None,
        on_event: OnEvent | None = None,
        max_cost_usd: float | None = None,
        max_total_tokens: int | None = None,
        run_id: str | None = None,
        prior_spend: Spend | None = None,
        keep_for_synthesis: bool = False,
        on_spend: OnSpend | None = None,
        batch: bool = False,
    ) -> RunReport:
        """Run every subtask as soon as its dependencies succeed, committing each result as it ends.

        ``run_id`` (default: a fresh one, see :func:`new_run_id`) lets a caller that may be
        interrupted find its own run afterwards. ``prior_spend`` (e.g. the plan's planning) counts
        toward the run's ceilings, now and on resume, but not in its usage. ``keep_for_synthesis``
        holds the synthesis's worst case free, so a run within its ceilings can still be synthesized.
        ``batch``: subtasks go through the Message Batches API at half price (``batching.py``).

        Raises:
            InputError, PlanError: the plan or an argument is unusable (checked before any token is spent).
            ConfigError: no API key.
        """
        run = await self._prepare(
            plan, plan_id, (max_concurrency, timeout_s), (max_cost_usd, max_total_tokens), run_id, prior_spend,
            keep_for_synthesis, batch,
        )  # fmt: skip
        return await self._run(run, on_event, on_spend)

    async def start_execute(
        self,
        plan: Plan | None = None,
        plan_id: str | None = None,
        max_concurrency: int | None = None,
        timeout_s: float | None = None,
        max_cost_usd: float | None = None,
        max_total_tokens: int | None = None,
        batch: bool = False,
    ) -> LiveRun:
        """Check and create the run like :meth:`execute_plan`, then run it in the background; returns its handle.

        Raises:
            InputError, PlanError, ConfigError: as ``execute_plan``, before anything runs.
        """
        shape, ceilings = (max_concurrency, timeout_s), (max_cost_usd, max_total_tokens)
        run = await self._prepare(plan, plan_id, shape, ceilings, batch=batch)
        live = LiveRun(run.run_id, "execute")
        live.expect(run.plan)
        return self.runs.launch(live, lambda: self._run(run, live.on_event, live.note_spend))

    async def resume_run(
        self,
        run_id: str,
        on_event: OnEvent | None = None,
        max_cost_usd: float | None = None,
        max_total_tokens: int | None = None,
    ) -> RunReport:
        """Continue a stored run: its succeeded tasks are kept and never called again; the rest run.

        The run's own ceilings apply unless ``max_cost_usd`` / ``max_total_tokens`` replace them
        (e.g. raised after a budget refusal).

        Raises:
            InputError: a ceiling out of range.
            StoreError: no such run, or another live process is running it.
            ConfigError: no API key.
        """
        with self.runs.claim(run_id):  # no second take-over here while this one runs
            return await self._run(await self._take_over(run_id, max_cost_usd, max_total_tokens), on_event)

    async def start_resume(
        self, run_id: str, max_cost_usd: float | None = None, max_total_tokens: int | None = None
    ) -> LiveRun:
        """Take a stored run over like :meth:`resume_run`, then run it in the background; returns its handle.

        An orchestration's run is synthesized again once it ends, so it returns what ``orchestrate`` returns.
        """
        with self.runs.claim(run_id):  # held from before the first await until the run is launched
            run = await self._take_over(run_id, max_cost_usd, max_total_tokens)
            live = LiveRun(run_id, "resume", spent=run.spent)
            live.expect(run.plan, run.kept)
            job = partial(self._run, run, live.on_event, live.note_spend)
            if run.options.orchestrated:
                reuse = run.reusable_synthesis()
                return self.runs.launch(
                    live, lambda: self.resume_orchestration(run.plan, run.options, job, live, reuse)
                )
            return self.runs.launch(live, job)

    async def cancel_batches(self, run_id: str) -> list[str]:
        """Cancel the Message Batches a stopped run still has in flight (cancel_run); their ids."""
        return await cancel_batches(self.settings, self.store, run_id)

    async def _prepare(
        self,
        plan: Plan | None,
        plan_id: str | None,
        shape: tuple[int | None, float | None],
        ceilings: tuple[float | None, int | None],
        run_id: str | None = None,
        prior_spend: Spend | None = None,
        keep_for_synthesis: bool = False,
        batch: bool = False,
    ) -> _Run:
        """Check a plan and the run's arguments (nothing is spent on bad input), then create the run."""
        (max_concurrency, timeout_s), (max_cost_usd, max_total_tokens) = shape, ceilings
        if batch:
            self.check_batch()
        plan = await self._plan_to_run(plan, plan_id)
        in_range("max_concurrency", max_concurrency, 1, 1024)
        in_range("timeout_s", timeout_s, 1e-3, 86_400.0)
        check_ceilings(max_cost_usd, max_total_tokens)
        estimate = estimate_plan(plan, self.settings, self.roles, batch=batch)
        synthesis = estimate.synthesis if keep_for_synthesis else None
        layers = estimate.critical_path_subtasks
        options = RunOptions(
            max_concurrency=max_concurrency or batch_cap(batch, plan, self.settings.max_concurrency),
            task_timeout_s=batch_timeout(batch, self.settings.task_timeout_s),
            run_timeout_s=timeout_s or batch_timeout(batch, self.settings.run_timeout_s, layers),
            max_cost_usd=max_cost_usd or self.settings.max_run_cost_usd,
            max_total_tokens=max_total_tokens or self.settings.max_run_tokens,
            prior_spend=prior_spend or Spend(),
            held_back=Spend() if synthesis is None else room_for(synthesis, self.settings.prices),
            orchestrated=keep_for_synthesis,
            batch=batch,
            demo=self.settings.demo,
        )
        _ = self.backend  # a missing key fails here, before the run is created
        await self._executor_ready()
        run_id = run_id or new_run_id()
        await self.run_store().create_run(run_id, plan.plan_id, options)
        return _Run(plan, run_id, options, estimate)

    async def _take_over(self, run_id: str, max_cost_usd: float | None, max_total_tokens: int | None) -> _Run:
        """Mark a stored run as running here, with what it kept and spent and its (maybe raised) ceilings.

        The caller holds the run's claim in the registry, so no run of that id goes on here meanwhile.
        """
        check_ceilings(max_cost_usd, max_total_tokens)
        stored = await self.store.get_run(run_id)
        if stored is None:
            raise self.no_run(run_id)
        check_same_backend(run_id, stored.options, self.settings.demo)
        _ = self.backend  # a missing key fails here, before the run is taken over
        await self._executor_ready()
        check_schemas(await self._stored_plan(stored.plan_id))  # it may predate the policy: refuse before taking over
        if stored.options.batch:
            self.check_batch()
        if self.settings.executor == "temporal":
            from .temporal.client import workflow_running

            if await workflow_running(self.settings, run_id):
                raise InputError(f"run {run_id!r} is still running on Temporal; wait_run or cancel_run it first")
        record = await self.run_store().resume_run(run_id, not_running_here=True)
        plan = await self._stored_plan(record.plan_id)
        options = record.options.model_copy(
            update={
                "max_cost_usd": max_cost_usd or record.options.max_cost_usd,
                "max_total_tokens": max_total_tokens or record.options.max_total_tokens,
            }
        )
        kept = {task_id: record.results[task_id] for task_id in record.succeeded_ids()}
        spent = Spend(usage=record.usage, cost_usd=record.cost_usd)
        estimate = estimate_plan(plan, self.settings, self.roles, batch=options.batch)
        return _Run(plan, run_id, options, estimate, kept, spent, stored.synthesis)

    async def _run(self, run: _Run, on_event: OnEvent | None, on_spend: OnSpend | None = None) -> RunReport:
        """Execute a prepared run; ``on_spend`` hears of every finished call's cost as it ends."""
        if self.settings.executor == "temporal":  # the same run as a workflow on Temporal's workers
            from .temporal.client import run_on_temporal

            return await run_on_temporal(self.settings, self.roles, self.run_store(), run, (on_event, on_spend))
        plan = run.plan
        prices = batch_prices(self.settings.prices) if run.options.batch else self.settings.prices
        budget = run_budget(run.options, run.spent, prices)
        ledger = UsageLedger()

        async def note_usage(request: CompletionRequest, model: str, usage: Usage) -> None:
            cost = cost_usd(usage, model, prices)
            ledger.note(request.label, model, usage, cost)
            if on_spend is not None:
                on_spend(Spend(usage=usage, cost_usd=cost))

        batcher = batch_backend(self.settings, self.store, run.run_id) if run.options.batch else None
        inner = self.backend if batcher is None else TracedBackend(batcher, self.telemetry, prices)  # chat spans
        backend = BudgetedBackend(inner, budget, on_usage=note_usage)
        run_span = otel_context.get_current()  # each subtask's span is the run's child, whichever task starts it

        def traced(subtask: Subtask, model: str) -> AbstractContextManager[Span]:
            return self.telemetry.agent(subtask.role, subtask.id, model, run_span)

        run_task = subtask_runner(plan, run.kept, backend, self.settings, self.roles, prices, traced)
        async with batch_mode(batcher):
            report = await execute_durably(
                self.store,
                plan,
                run.run_id,
                batcher.track(run_task) if batcher else run_task,
                run.options,
                ledger=ledger,
                estimate=run.estimate,
                on_event=on_event,
                completed=run.kept,
                secrets=secret_values(self.settings),
            )
        if batcher is not None:
            report = await note_batch_discount(self.store, report, self.settings.prices)
        return report

    def check_batch(self) -> None:
        """Batch mode needs a batch-capable backend in this server; runs on Temporal have none."""
        if self.settings.executor == "temporal":
            raise InputError(
                "batch=true is not available with SUBAGENT_MCP_EXECUTOR=temporal (a run's calls are Temporal "
                "activities, not Message Batches); call again without batch, or on a server with the embedded executor"
            )
        check_batch_backend(self.settings, self.backend_override)

    async def _plan_to_run(self, plan: Plan | None, plan_id: str | None) -> Plan:
        """The plan given inline (saved under a fresh id if edited) or by id, checked for this server."""
        if (plan is None) == (plan_id is None):
            raise InputError("pass exactly one of plan (a plan object, e.g. from plan_task) or plan_id")
        if plan is None:
            assert plan_id is not None
            plan = await self._stored_plan(plan_id)
            check_runnable(plan, self.settings, self.roles)
            return plan
        plan = plan.model_copy(update={"estimate": None, "planning": None})
        check_runnable(plan, self.settings, self.roles)
        stored = await self.store.get_plan(plan.plan_id)
        if stored is not None and stored != plan:  # an edited plan: keep both, so old runs stay intact
            fresh = f"{plan.plan_id[: MAX_PLAN_ID_CHARS - 7]}-{uuid.uuid4().hex[:6]}"
            plan = plan.model_copy(update={"plan_id": fresh})
        await self.store.save_plan(plan)
        return plan

    async def _stored_plan(self, plan_id: str) -> Plan:
        plan = await self.store.get_plan(plan_id)
        if plan is None:
            raise InputError(f"no plan with id {shown_id(plan_id)} is stored; pass the plan itself instead")
        return plan
