"""The use cases behind the tools: plan, run one subagent, execute or resume a plan, synthesize.

Wires the core, a model backend, the roles and the store together; knows nothing of MCP, so the
CLI, the MCP server and the tests all drive the same code.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncGenerator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from pydantic import ValidationError

from .arguments import check_ceilings, first_error, in_range, require_text
from .backends.base import ModelBackend
from .backends.budgeted import BudgetedBackend
from .contracts import (
    CompletionRequest,
    JsonObject,
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
from .core.budget import Budget, Limits, room_for
from .core.context import build_context
from .core.pricing import cost_usd
from .core.run_state import OnEvent
from .errors import InputError, ModelError
from .planning import check_runnable, estimate_plan, planner_request, subtask_request
from .roles import BUILTIN_ROLES, Role, get_role
from .runs import RunOptions, UsageLedger, execute_durably, in_plan_order, new_run_id, run_budget
from .settings import Settings
from .store import RunRecord, RunSummary, Store, default_db_path
from .structured import check_output_schema, complete_json
from .subagent import run_subtask
from .synthesis import synthesize

log = logging.getLogger(__name__)


@dataclass
class Service:
    """One server's worth of state: settings, roles, the store and the (lazily created) model backend."""

    settings: Settings
    store: Store
    backend_override: ModelBackend | None = None
    roles: dict[str, Role] = field(default_factory=lambda: dict(BUILTIN_ROLES))
    _backend: ModelBackend | None = None

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings, backend: ModelBackend | None = None) -> AsyncGenerator[Service]:
        """Open the store (flagging runs a dead process left running) and close everything on exit.

        Raises:
            StoreError: the database cannot be used; the message names the file and what to do.
        """
        async with Store.open(settings.db_path or default_db_path()) as store:
            interrupted = await store.mark_interrupted()
            if interrupted:
                log.warning("runs interrupted by a previous process (resume them): %s", ", ".join(interrupted))
            service = cls(settings, store, backend_override=backend)
            try:
                yield service
            finally:
                if service._backend is not None:
                    await service._backend.aclose()

    @property
    def backend(self) -> ModelBackend:
        """The model backend, created on first use so a missing key only fails the calls that need it.

        Raises:
            ConfigError: no API key is configured (and neither a test backend nor demo mode).
        """
        if self._backend is None:
            self._backend = self._make_backend()
        return self._backend

    def _make_backend(self) -> ModelBackend:
        if self.backend_override is not None:
            return self.backend_override
        if self.settings.demo:
            from .demo import demo_backend

            return demo_backend()
        self.settings.require_api_key()
        from .backends.anthropic import AnthropicBackend

        return AnthropicBackend(self.settings)

    # --- plan_task --------------------------------------------------------------------------------

    async def plan_task(
        self,
        task: str,
        max_subtasks: int | None = None,
        roles: list[str] | None = None,
        limits: Limits | None = None,
    ) -> Plan:
        """Ask the planner model for a validated plan (one repair turn), save it, and attach its estimate.

        With ``limits``, a planner call whose worst case could cross them is not sent.

        Raises:
            InputError: empty task, unknown role, or a max_subtasks out of range.
            ModelError: the planner failed or kept producing an invalid plan (BudgetExceededError: refused).
        """
        task = require_text(task, "task")
        limit = self._subtask_limit(max_subtasks)
        offered = [get_role(name, self.roles) for name in (roles or list(self.roles))]
        plan_id = f"plan-{uuid.uuid4().hex[:12]}"

        def check(draft: JsonObject) -> None:  # roles and the size hint's cap are in the schema itself
            try:
                Plan.model_validate({"plan_id": plan_id, "task": task, **draft}, context={"max_subtasks": limit})
            except ValidationError as exc:
                raise ValueError(f"the plan is invalid: {first_error(exc)}") from None

        request = planner_request(task, offered, limit, self.settings)
        backend = self.backend
        if limits is not None:  # a planner call whose worst case could cross the ceilings is not sent
            backend = BudgetedBackend(backend, Budget(limits, self.settings.prices))
        result = await complete_json(backend, request, check)
        plan = Plan.model_validate({"plan_id": plan_id, "task": task, **result.output}, context={"max_subtasks": limit})
        await self.store.save_plan(plan)
        planning = Spend(usage=result.usage, cost_usd=cost_usd(result.usage, result.model, self.settings.prices))
        return plan.model_copy(update={"estimate": self.estimate(plan), "planning": planning})

    def _subtask_limit(self, requested: int | None) -> int:
        configured = self.settings.max_subtasks
        if requested is None:
            return configured
        if not 1 <= requested <= configured:
            raise InputError(
                f"max_subtasks must be between 1 and {configured} (the server's SUBAGENT_MCP_MAX_SUBTASKS); "
                f"got {requested}"
            )
        return requested

    def estimate(self, plan: Plan) -> PlanEstimate:
        """Expected and worst-case cost of running ``plan`` and synthesizing it, before any call."""
        return estimate_plan(plan, self.settings, self.roles)

    # --- run_subagent -----------------------------------------------------------------------------

    async def run_subagent(
        self,
        role: str,
        instructions: str,
        context: str | None = None,
        output_schema: JsonObject | None = None,
        model: str | None = None,
    ) -> SubagentResult:
        """Run one specialist on ad-hoc instructions (no plan); failures come back as a failed result.

        Raises:
            InputError: unknown role, empty instructions, or an unusable output_schema.
        """
        subtask = Subtask(
            id="subagent",
            role=get_role(role, self.roles).name,
            instructions=require_text(instructions, "instructions"),
            output_schema=None if output_schema is None else check_output_schema(output_schema),
        )
        if model is not None and not model.strip():
            raise InputError("model must be a model id such as 'claude-haiku-5-5', or omitted")
        request = subtask_request(subtask, None, context, self.settings, self.roles, model)
        return await run_subtask(self.backend, subtask, request, self.settings.prices)

    # --- execute_plan and resume ------------------------------------------------------------------

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
    ) -> RunReport:
        """Run every subtask as soon as its dependencies succeed, committing each result as it ends.

        ``run_id`` (default: a fresh one, see :func:`new_run_id`) lets a caller that may be
        interrupted find its own run afterwards. ``prior_spend`` (e.g. the plan's planning) counts
        toward the run's ceilings, now and on resume, but not in its usage. ``keep_for_synthesis``
        holds the synthesis's worst case free, so a run within its ceilings can still be synthesized.

        Raises:
            InputError, PlanError: the plan or an argument is unusable (checked before any token is spent).
            ConfigError: no API key.
        """
        plan = await self._plan_to_run(plan, plan_id)
        in_range("max_concurrency", max_concurrency, 1, 1024)
        in_range("timeout_s", timeout_s, 1e-3, 86_400.0)
        check_ceilings(max_cost_usd, max_total_tokens)
        estimate = self.estimate(plan)
        synthesis = estimate.synthesis if keep_for_synthesis else None
        options = RunOptions(
            max_concurrency=max_concurrency or self.settings.max_concurrency,
            task_timeout_s=self.settings.task_timeout_s,
            run_timeout_s=timeout_s or self.settings.run_timeout_s,
            max_cost_usd=max_cost_usd or self.settings.max_run_cost_usd,
            max_total_tokens=max_total_tokens or self.settings.max_run_tokens,
            prior_spend=prior_spend or Spend(),
            held_back=Spend() if synthesis is None else room_for(synthesis, self.settings.prices),
        )
        _ = self.backend  # a missing key fails here, before the run is created
        run_id = run_id or new_run_id()
        await self.store.create_run(run_id, plan.plan_id, options.model_dump())
        return await self._run(plan, run_id, options, on_event, ({}, Spend()), estimate)

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
        check_ceilings(max_cost_usd, max_total_tokens)
        _ = self.backend  # a missing key fails here, before the run is taken over
        record = await self.store.resume_run(run_id)
        plan = await self._stored_plan(record.plan_id)
        options = RunOptions.model_validate(record.options)
        options = options.model_copy(
            update={
                "max_cost_usd": max_cost_usd or options.max_cost_usd,
                "max_total_tokens": max_total_tokens or options.max_total_tokens,
            }
        )
        kept = {task_id: record.results[task_id] for task_id in record.succeeded_ids()}
        spent = Spend(usage=record.usage, cost_usd=record.cost_usd)
        return await self._run(plan, run_id, options, on_event, (kept, spent), self.estimate(plan))

    async def _run(
        self,
        plan: Plan,
        run_id: str,
        options: RunOptions,
        on_event: OnEvent | None,
        so_far: tuple[Mapping[str, SubagentResult], Spend],
        estimate: PlanEstimate,
    ) -> RunReport:
        """Execute ``plan`` as run ``run_id``: ``so_far`` is what earlier attempts kept and spent."""
        kept, spent = so_far
        budget = run_budget(options, spent, self.settings.prices)
        ledger = UsageLedger()

        async def note_usage(request: CompletionRequest, model: str, usage: Usage) -> None:
            ledger.note(request.label, model, usage, cost_usd(usage, model, self.settings.prices))

        backend = BudgetedBackend(self.backend, budget, on_usage=note_usage)
        context_budget = self.settings.context_budget_tokens

        async def run_task(subtask: Subtask, deps: Mapping[str, SubagentResult]) -> SubagentResult:
            context = build_context(plan.task, [deps[d] for d in subtask.depends_on], context_budget)
            text = context.render(include_task=False) if subtask.depends_on else None
            request = subtask_request(subtask, plan.task, text, self.settings, self.roles)
            return await run_subtask(backend, subtask, request, self.settings.prices)

        return await execute_durably(
            self.store,
            plan,
            run_id,
            run_task,
            options,
            ledger=ledger,
            estimate=estimate,
            on_event=on_event,
            completed=kept,
        )

    def ceilings(self) -> Limits:
        """The configured per-run ceilings, which hold for a whole orchestration."""
        return Limits(max_cost_usd=self.settings.max_run_cost_usd, max_total_tokens=self.settings.max_run_tokens)

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
            plan = plan.model_copy(update={"plan_id": f"{plan.plan_id}-{uuid.uuid4().hex[:6]}"})
        await self.store.save_plan(plan)
        return plan

    async def _stored_plan(self, plan_id: str) -> Plan:
        plan = await self.store.get_plan(plan_id)
        if plan is None:
            raise InputError(f"no plan with id {plan_id!r} is stored; pass the plan itself instead")
        return plan

    # --- runs, synthesize, orchestrate ------------------------------------------------------------

    async def list_runs(self, limit: int = 20) -> list[RunSummary]:
        in_range("limit", limit, 1, 500)
        return await self.store.list_runs(limit)

    async def get_run(self, run_id: str) -> tuple[Plan, RunRecord]:
        """A stored run and its plan.

        Raises:
            InputError: no run with that id.
        """
        record = await self.store.get_run(run_id)
        if record is None:
            raise InputError(
                f"no run with id {run_id!r} is stored; list_runs (or `subagent-mcp runs`) shows the recent ones"
            )
        return await self._stored_plan(record.plan_id), record

    async def synthesize(
        self, run_id: str | None = None, results: list[SubagentResult] | None = None, task: str | None = None
    ) -> Synthesis:
        """Merge a run's (or the given) results into one answer that lists what did not succeed.

        Raises:
            InputError: neither or both of run_id and results, an unknown run, or no task for raw results.
            ModelError: the synthesis model failed.
        """
        if (run_id is None) == (results is None):
            raise InputError("pass exactly one of run_id (from execute_plan) or results (a list of results)")
        if run_id is not None:
            plan, record = await self.get_run(run_id)
            results, task = in_plan_order(plan, record.results), task or plan.task
        if not task or not task.strip():
            raise InputError("task is empty; say what the results should answer")
        if not results:
            raise InputError("there are no results to synthesize")
        return await synthesize(self.backend, self.settings, task, results)

    async def orchestrate(
        self,
        task: str,
        max_subtasks: int | None = None,
        max_concurrency: int | None = None,
        on_event: OnEvent | None = None,
    ) -> OrchestrateResult:
        """Plan, execute and synthesize in one go; a failed synthesis still returns the run's results."""
        plan = await self.plan_task(task, max_subtasks=max_subtasks, limits=self.ceilings())
        report = await self.execute_plan(
            plan, max_concurrency=max_concurrency, on_event=on_event, prior_spend=plan.planning, keep_for_synthesis=True
        )
        return await self.conclude(plan, report)

    async def conclude(self, plan: Plan, report: RunReport) -> OrchestrateResult:
        """Synthesize a finished run; if synthesis fails, the run's results still come back, with why.

        The synthesis call is held to the configured run ceilings together with
        the planning and the run, so ``orchestrate`` as a whole stays within them.
        """
        spent = (plan.planning or Spend()) + Spend(usage=report.usage, cost_usd=report.cost_usd)
        budget = Budget(self.ceilings(), self.settings.prices, spent=spent.usage, spent_usd=spent.cost_usd)
        try:
            synthesis = await synthesize(
                BudgetedBackend(self.backend, budget), self.settings, plan.task, report.results
            )
        except ModelError as exc:
            model = exc.model or self.settings.synthesis_model
            spent += Spend(usage=exc.usage, cost_usd=cost_usd(exc.usage, model, self.settings.prices))
            return OrchestrateResult(plan=plan, report=report, synthesis=None, synthesis_error=str(exc), total=spent)
        spent += Spend(usage=synthesis.usage, cost_usd=synthesis.cost_usd)
        return OrchestrateResult(plan=plan, report=report, synthesis=synthesis, total=spent)
