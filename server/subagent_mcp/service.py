"""The use cases behind the tools: plan a task, run one subagent (and, built on them, whole runs).

Wires the core, a model backend and the roles together; knows nothing of MCP, so the CLI, the MCP
server and the tests all drive the same code.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from pydantic import ValidationError

from . import prompts
from .backends.base import ModelBackend
from .backends.budgeted import BudgetedBackend, request_input_tokens
from .contracts import (
    CompletionRequest,
    JsonObject,
    ModelMessage,
    OrchestrateResult,
    Plan,
    PlanEstimate,
    RunReport,
    SubagentResult,
    Subtask,
    Synthesis,
    TaskEstimate,
    Usage,
)
from .core.budget import Budget, Limits
from .core.context import build_context, estimate_tokens
from .core.estimate import context_tokens, estimate_call, total
from .core.executor import OnEvent, RunState, execute
from .core.graph import topological_order
from .core.pricing import cost_usd
from .errors import BudgetExceededError, InputError, ModelError, PlanError
from .roles import BUILTIN_ROLES, Role, get_role
from .settings import Settings
from .structured import check_output_schema, complete_json
from .synthesis import SYNTHESIS_EXPECTED_OUTPUT_TOKENS, SYNTHESIS_MAX_TOKENS, synthesize

PLANNER_MAX_TOKENS = 8192


@dataclass
class Service:
    """One server's worth of state: settings, roles and the (lazily created) model backend."""

    settings: Settings
    backend_override: ModelBackend | None = None
    roles: dict[str, Role] = field(default_factory=lambda: dict(BUILTIN_ROLES))
    plans: dict[str, Plan] = field(default_factory=dict[str, Plan])
    runs: dict[str, tuple[Plan, RunReport]] = field(default_factory=dict[str, tuple[Plan, RunReport]])
    _backend: ModelBackend | None = None

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings, backend: ModelBackend | None = None) -> AsyncGenerator[Service]:
        """A service whose backend is closed on exit; no model client exists until a tool needs one."""
        service = cls(settings, backend_override=backend)
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

    def require_backend(self) -> ModelBackend:
        """The backend, created now so that a missing key is reported before any work starts."""
        return self.backend

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

    async def plan_task(self, task: str, max_subtasks: int | None = None, roles: list[str] | None = None) -> Plan:
        """Ask the planner model for a validated plan; an invalid plan gets one repair turn.

        Raises:
            InputError: empty task, unknown role, or a max_subtasks out of range.
            ModelError: the planner failed or kept producing an invalid plan.
        """
        task = _require_text(task, "task")
        limit = self._subtask_limit(max_subtasks)
        offered = [get_role(name, self.roles) for name in (roles or list(self.roles))]
        plan_id = f"plan-{uuid.uuid4().hex[:12]}"

        def check(draft: JsonObject) -> None:
            try:
                Plan.model_validate({"plan_id": plan_id, "task": task, **draft}, context={"max_subtasks": limit})
            except ValidationError as exc:
                raise ValueError(f"the plan is invalid: {_first_error(exc)}") from None

        request = CompletionRequest(
            model=self.settings.planner_model,
            system=prompts.planner_system(offered, limit),
            messages=[ModelMessage(role="user", content=task)],
            output_schema=prompts.planner_schema([r.name for r in offered]),
            max_tokens=PLANNER_MAX_TOKENS,
            label="plan",
        )
        result = await complete_json(self.backend, request, check)
        plan = Plan.model_validate({"plan_id": plan_id, "task": task, **result.output}, context={"max_subtasks": limit})
        plan = plan.model_copy(update={"estimate": self.estimate(plan)})
        self.plans[plan.plan_id] = plan
        return plan

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
            instructions=_require_text(instructions, "instructions"),
            output_schema=None if output_schema is None else check_output_schema(output_schema),
        )
        if model is not None and not model.strip():
            raise InputError("model must be a model id such as 'claude-haiku-5-5', or omitted")
        return await self.run_subtask(subtask, task=None, context=context, model=model)

    def subtask_request(
        self, subtask: Subtask, task: str | None, context: str | None, model: str | None = None
    ) -> CompletionRequest:
        """The model request for ``subtask`` (also what the cost estimate measures)."""
        role = get_role(subtask.role, self.roles)
        return CompletionRequest(
            model=model or self.settings.model_for_role(role.name, role.tier),
            system=prompts.subagent_system(role),
            messages=[
                ModelMessage(
                    role="user", content=prompts.subagent_user(subtask.id, subtask.instructions, task, context)
                )
            ],
            output_schema=subtask.output_schema or role.output_schema,
            max_tokens=self.settings.max_output_tokens,
            label=subtask.id,
        )

    async def run_subtask(
        self,
        subtask: Subtask,
        task: str | None,
        context: str | None,
        model: str | None = None,
        backend: ModelBackend | None = None,
    ) -> SubagentResult:
        """Run ``subtask`` through its role; failures become a result with the usage they spent.

        A call the budget refused before anything was sent makes the task ``skipped`` (reason: budget).
        """
        request = self.subtask_request(subtask, task, context, model)
        started = time.monotonic()
        try:
            out = await complete_json(backend or self.backend, request)
        except ModelError as exc:
            refused = isinstance(exc, BudgetExceededError) and exc.attempts == 0
            return SubagentResult(
                task_id=subtask.id,
                role=subtask.role,
                status="skipped" if refused else "failed",
                error=str(exc),
                attempts=exc.attempts,
                usage=exc.usage,
                cost_usd=cost_usd(exc.usage, exc.model or request.model, self.settings.prices),
                model=exc.model or request.model,
                duration_s=time.monotonic() - started,
            )
        return SubagentResult(
            task_id=subtask.id,
            role=subtask.role,
            status="succeeded",
            output=out.output,
            attempts=out.attempts,
            usage=out.usage,
            cost_usd=cost_usd(out.usage, out.model, self.settings.prices),
            model=out.model,
            duration_s=time.monotonic() - started,
        )

    def estimate(self, plan: Plan) -> PlanEstimate:
        """Expected and worst-case cost of running ``plan`` and synthesizing it, before any call."""
        budget = self.settings.context_budget_tokens
        expected: dict[str, int] = {}
        tasks: list[TaskEstimate] = []
        for task_id in topological_order(plan.graph()):
            subtask = plan.subtask(task_id)
            request = self.subtask_request(subtask, plan.task, None)
            deps = context_tokens([expected[d] for d in subtask.depends_on], budget)
            role = get_role(subtask.role, self.roles)
            call = estimate_call(
                task_id,
                request.model,
                request_input_tokens(request) + deps,
                role.expected_output_tokens,
                request.max_tokens,
                self.settings.prices,
            )
            expected[task_id] = call.output_tokens
            tasks.append(call)
        synthesis = estimate_call(
            "synthesis",
            self.settings.synthesis_model,
            estimate_tokens(prompts.SYNTHESIS_SYSTEM + plan.task) + context_tokens(list(expected.values()), budget),
            SYNTHESIS_EXPECTED_OUTPUT_TOKENS,
            SYNTHESIS_MAX_TOKENS,
            self.settings.prices,
        )
        tasks.sort(key=lambda t: [s.id for s in plan.subtasks].index(t.task_id))
        return total(tasks, plan.graph(), synthesis)

    # --- execute_plan -----------------------------------------------------------------------------

    async def execute_plan(
        self,
        plan: Plan | None = None,
        plan_id: str | None = None,
        max_concurrency: int | None = None,
        timeout_s: float | None = None,
        on_event: OnEvent | None = None,
        max_cost_usd: float | None = None,
        max_total_tokens: int | None = None,
    ) -> RunReport:
        """Run every subtask of a plan as soon as its dependencies succeed; failures are data.

        The report is kept (under its run_id) even when the host cancels the call mid-run.

        Raises:
            InputError, PlanError: the plan or an argument is unusable (checked before any token is spent).
            ConfigError: no API key.
        """
        plan = self._checked_plan(plan, plan_id)
        self._in_range("max_concurrency", max_concurrency, 1, 1024)
        cap = max_concurrency or self.settings.max_concurrency
        run_timeout = self._in_range("timeout_s", timeout_s, 1e-3, 86_400.0) or self.settings.run_timeout_s
        self._in_range("max_cost_usd", max_cost_usd, 1e-9, 1e9)
        self._in_range("max_total_tokens", max_total_tokens, 1, 1e12)
        limits = Limits(
            max_cost_usd=max_cost_usd or self.settings.max_run_cost_usd,
            max_total_tokens=max_total_tokens or self.settings.max_run_tokens,
        )
        backend = BudgetedBackend(self.require_backend(), Budget(limits, self.settings.prices))
        estimate = self.estimate(plan)
        run_id = f"run-{uuid.uuid4().hex[:12]}"
        context_budget = self.settings.context_budget_tokens

        async def run_task(subtask: Subtask, deps: Mapping[str, SubagentResult]) -> SubagentResult:
            context = build_context(plan.task, [deps[d] for d in subtask.depends_on], context_budget)
            text = context.render(include_task=False) if subtask.depends_on else None
            return await self.run_subtask(subtask, plan.task, text, backend=backend)

        state = RunState()
        try:
            await execute(
                plan,
                run_task,
                max_concurrency=cap,
                task_timeout_s=self.settings.task_timeout_s,
                run_timeout_s=run_timeout,
                on_event=on_event,
                state=state,
            )
        finally:
            report = _report(run_id, plan, state).model_copy(update={"estimate": estimate})
            self.runs[run_id] = (plan, report)
        return report

    def _checked_plan(self, plan: Plan | None, plan_id: str | None) -> Plan:
        if (plan is None) == (plan_id is None):
            raise InputError("pass exactly one of plan (a plan object, e.g. from plan_task) or plan_id")
        if plan is None:
            assert plan_id is not None
            if plan_id not in self.plans:
                raise InputError(f"no plan with id {plan_id!r} in this server; pass the plan itself instead")
            plan = self.plans[plan_id]
        if len(plan.subtasks) > self.settings.max_subtasks:
            raise PlanError(
                f"the plan has {len(plan.subtasks)} subtasks, more than the server's maximum of "
                f"{self.settings.max_subtasks} (SUBAGENT_MCP_MAX_SUBTASKS)"
            )
        unknown = [f"{s.id} (role {s.role!r})" for s in plan.subtasks if s.role not in self.roles]
        if unknown:
            raise PlanError(
                f"unknown roles in subtasks: {', '.join(unknown)}; available roles: {', '.join(sorted(self.roles))}",
                ids=[s.id for s in plan.subtasks if s.role not in self.roles],
            )
        for s in plan.subtasks:
            if s.output_schema is not None:
                try:
                    check_output_schema(s.output_schema)
                except InputError as exc:
                    raise PlanError(f"subtask {s.id}: {exc}", ids=[s.id]) from None
        return plan

    @staticmethod
    def _in_range(name: str, value: float | None, low: float, high: float) -> float | None:
        if value is not None and not low <= value <= high:
            raise InputError(f"{name} must be between {low:g} and {high:g}, got {value:g}")
        return value

    # --- synthesize and orchestrate ---------------------------------------------------------------

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
            if run_id not in self.runs:
                raise InputError(f"no run with id {run_id!r} in this server; pass its results instead")
            plan, report = self.runs[run_id]
            results, task = report.results, task or plan.task
        if not task or not task.strip():
            raise InputError("task is empty; say what the results should answer")
        assert results is not None
        if not results:
            raise InputError("results is empty; there is nothing to synthesize")
        return await synthesize(self.backend, self.settings, task, results)

    async def orchestrate(
        self,
        task: str,
        max_subtasks: int | None = None,
        max_concurrency: int | None = None,
        on_event: OnEvent | None = None,
    ) -> OrchestrateResult:
        """Plan, execute and synthesize in one go; a failed synthesis still returns the run's results."""
        plan = await self.plan_task(task, max_subtasks=max_subtasks)
        report = await self.execute_plan(plan, max_concurrency=max_concurrency, on_event=on_event)
        try:
            synthesis = await synthesize(self.backend, self.settings, plan.task, report.results)
        except ModelError as exc:
            return OrchestrateResult(plan=plan, report=report, synthesis=None, synthesis_error=str(exc))
        return OrchestrateResult(plan=plan, report=report, synthesis=synthesis)


def _report(run_id: str, plan: Plan, state: RunState) -> RunReport:
    """The report of a run from its state, in plan order, with usage and cost summed over every task."""
    results = [state.results[s.id] for s in plan.subtasks if s.id in state.results]
    usage = sum((r.usage for r in results), Usage())
    return RunReport(
        run_id=run_id,
        plan_id=plan.plan_id,
        status=state.status,
        results=results,
        usage=usage,
        cost_usd=round(sum(r.cost_usd for r in results), 8),
        makespan_s=state.makespan_s,
    )


def _require_text(value: str, name: str) -> str:
    if not value or not value.strip():
        raise InputError(f"{name} is empty; describe what should be done")
    return value.strip()


def _first_error(exc: ValidationError) -> str:
    err = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in err["loc"])
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message
