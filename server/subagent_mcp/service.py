"""The use cases behind the tools: plan, run one subagent, synthesize; runs come from the Execution mixins.

Wires the core, a model backend, the roles and the store together; knows nothing of MCP, so the
CLI, the MCP server and the tests all drive the same code.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
from pydantic import ValidationError

from .agents import load_roles
from .arguments import first_error, in_range, require_text, sentence
from .backends.base import ModelBackend
from .backends.budgeted import BudgetedBackend, billed_model
from .backends.cache_warmup import CacheWarmupBackend
from .backends.limited import limited
from .backends.traced import TracedBackend
from .background import RunRegistry
from .contracts import (
    JsonObject,
    Plan,
    PlanEstimate,
    Spend,
    SubagentResult,
    Subtask,
    Synthesis,
    Usage,
)
from .core.budget import Budget, Limits
from .core.pricing import cost_usd
from .errors import InputError, ModelError
from .orchestration import Orchestration
from .planning import check_model_priced, estimate_plan, planner_draft, planner_request, subtask_request
from .replicas import keep_leases, store_location
from .role_catalog import RoleCatalog, role_info
from .roles import BUILTIN_ROLES, Role, get_role
from .runs import in_plan_order
from .schemas import check_output_schema
from .settings import Settings
from .store import RunRecord, RunSummary, Store
from .structured import complete_json
from .subagent import run_subtask
from .synthesis import synthesize
from .telemetry import Telemetry, agent_result, spent

log = logging.getLogger(__name__)


@dataclass
class Service(Orchestration):
    """One server's worth of state: settings, roles, the store and the (lazily created) model backend."""

    settings: Settings
    store: Store
    runs: RunRegistry
    backend_override: ModelBackend | None = None
    roles: dict[str, Role] = field(default_factory=lambda: dict(BUILTIN_ROLES))
    role_catalog: RoleCatalog | None = None
    """What list_roles shows: set when agent files are read (``open``); else the roles, listed plainly."""
    telemetry: Telemetry = field(default_factory=Telemetry.of)
    """Spans and metrics (``telemetry.py``): the global providers' unless a test passes its own."""
    _backend: ModelBackend | None = None

    @classmethod
    @asynccontextmanager
    async def open(
        cls, settings: Settings, backend: ModelBackend | None = None, telemetry: Telemetry | None = None
    ) -> AsyncGenerator[Service]:
        """Open the store (flagging runs a dead process left running) and close everything on exit.

        Raises:
            StoreError: the database cannot be used; the message names the file and what to do.
        """
        failure: Exception | None = None
        loaded = await anyio.to_thread.run_sync(load_roles, settings)  # a bad agent file is logged and skipped
        location = store_location(settings)
        async with Store.open(location, lease_s=settings.lease_s) as store, anyio.create_task_group() as tg:
            interrupted = await store.mark_interrupted()
            if interrupted:
                log.warning("runs interrupted by a previous process (resume them): %s", ", ".join(interrupted))
            telemetry = telemetry or Telemetry.of()
            service = cls(
                settings, store, RunRegistry(tg, telemetry), backend, roles=loaded.roles, role_catalog=loaded.catalog,
                telemetry=telemetry,
            )  # fmt: skip
            leases = anyio.CancelScope()  # renews this server's run leases; another server's runs are left alone
            tg.start_soon(keep_leases, store, service.runs, leases)
            try:
                yield service
            except Exception as exc:  # raised below, unwrapped: the task group would make it an ExceptionGroup
                failure = exc
            finally:
                with anyio.CancelScope(shield=True):
                    await service._shutdown()
                leases.cancel()
        if failure is not None:
            raise failure

    async def _shutdown(self) -> None:
        """Stop runs still going, store them ``interrupted`` (resumable), then close the model client."""
        cut = await self.runs.shutdown()
        stopped = [run.run_id for run in cut if run.phase == "running" and not run.detached]
        if stopped:
            await self.store.interrupt_runs(stopped)
            log.warning("stopped at shutdown, resume them later: %s", ", ".join(stopped))
        if self._backend is not None:
            await self._backend.aclose()

    @property
    def backend(self) -> ModelBackend:
        """The model backend, created on first use so a missing key only fails the calls that need it.

        Raises:
            ConfigError: no API key is configured (and neither a test backend nor demo mode).
        """
        if self._backend is None:  # one adaptive cap on model calls in flight for every run of this process
            traced = TracedBackend(limited(self._make_backend(), self.settings), self.telemetry, self.settings.prices)
            self._backend = CacheWarmupBackend(traced)
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

    def list_roles(self) -> RoleCatalog:
        """Every role (name, description, source, model, tools) and the agent files that were skipped."""
        if self.role_catalog is None:
            return RoleCatalog(roles=[role_info(role, self.settings) for role in self.roles.values()])
        return self.role_catalog

    # --- plan_task --------------------------------------------------------------------------------

    async def plan_task(
        self,
        task: str,
        max_subtasks: int | None = None,
        roles: list[str] | None = None,
        limits: Limits | None = None,
        run_id: str | None = None,
    ) -> Plan:
        """Ask the planner model for a validated plan (one repair turn), save it, and attach its estimate.

        With ``limits``, a planner call whose worst case could cross them is not sent. What the planner
        was billed is recorded whatever happens (with ``run_id``, an orchestration's), a failure's too.

        Raises:
            InputError: empty task, unknown role, or a max_subtasks out of range.
            ModelError: the planner failed or kept producing an invalid plan (BudgetExceededError: refused).
        """
        task = require_text(task, "task")
        limit = self._subtask_limit(max_subtasks)
        offered = [get_role(name, self.roles) for name in (roles or list(self.roles))]
        plan_id = f"plan-{uuid.uuid4().hex[:12]}"

        def check(draft: JsonObject) -> None:  # the roles are in the schema itself
            try:
                Plan.model_validate(
                    {"plan_id": plan_id, "task": task, **planner_draft(draft, self.settings.max_output_tokens)},
                    context={"max_subtasks": limit},
                )
            except ValidationError as exc:
                raise ValueError(f"the plan is invalid: {first_error(exc)}") from None

        request = planner_request(task, offered, limit, self.settings)
        backend = self.backend
        if limits is not None:  # a planner call whose worst case could cross the ceilings is not sent
            backend = BudgetedBackend(backend, Budget(limits, self.settings.prices))
        with self.telemetry.plan() as span:
            try:
                result = await complete_json(backend, request, check)
            except ModelError as exc:
                raise await self._planner_failed(exc, run_id) from None
            priced = billed_model(result.model, request.model, self.settings.prices)
            spent(span, result.usage, cost_usd(result.usage, priced, self.settings.prices))
        draft = planner_draft(result.output, self.settings.max_output_tokens)
        plan = Plan.model_validate({"plan_id": plan_id, "task": task, **draft}, context={"max_subtasks": limit})
        await self.store.save_plan(plan)
        planning = Spend(usage=result.usage, cost_usd=cost_usd(result.usage, priced, self.settings.prices))
        await self.store.log_planning(plan_id, run_id, result.model, planning)
        return plan.model_copy(update={"estimate": self.estimate(plan), "planning": planning})

    async def _planner_failed(self, exc: ModelError, run_id: str | None) -> ModelError:
        """Record a failed planner's spend and say it in the error, which is otherwise all the caller sees."""
        model = exc.model or self.settings.planner_model
        priced = billed_model(model, self.settings.planner_model, self.settings.prices)
        spend = Spend(usage=exc.usage, cost_usd=cost_usd(exc.usage, priced, self.settings.prices))
        if not spend.usage.total_tokens:
            return exc
        await self.store.log_planning(None, run_id, model, spend, str(exc))
        billed = f"{spend.usage.input_tokens:,} in / {spend.usage.output_tokens:,} out tokens, ${spend.cost_usd:.4f}"
        return type(exc)(
            f"{sentence(str(exc))} The planner's calls were billed {billed} (kept on record).",
            usage=exc.usage,
            attempts=exc.attempts,
            model=exc.model,
            status_code=exc.status_code,
            request_id=exc.request_id,
        )

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
            InputError: unknown role, empty instructions, an unusable output_schema, or a model with no price.
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
        check_model_priced(request.model, self.settings)
        with self.telemetry.agent(subtask.role, subtask.id, request.model) as span:
            result = await run_subtask(self.backend, subtask, request, self.settings.prices)
            agent_result(span, result)
        return result

    # --- run ceilings -----------------------------------------------------------------------------

    def ceilings(self, max_cost_usd: float | None = None, max_total_tokens: int | None = None) -> Limits:
        """A run's ceilings, which hold for a whole orchestration: those given, else the configured ones."""
        return Limits(
            max_cost_usd=max_cost_usd or self.settings.max_run_cost_usd,
            max_total_tokens=max_total_tokens or self.settings.max_run_tokens,
        )

    # --- runs and synthesize ----------------------------------------------------------------------

    async def list_runs(self, limit: int = 20) -> list[RunSummary]:
        """Recent runs, newest first; those going on in this server carry their live progress.

        On Temporal, a run whose workflow failed or was terminated unobserved is found here and shown
        (and stored) ``interrupted``, ready for resume_run.
        """
        in_range("limit", limit, 1, 500)
        summaries = await self.store.list_runs(limit)
        live = {run.run_id: run for run in self.runs.live()}
        gone = await self.settle_on_temporal(
            [s.run_id for s in summaries if s.status == "running" and s.run_id not in live]
        )
        return [
            s.model_copy(update={"live": live[s.run_id].handle(f"wait_run(run_id={s.run_id!r})")})
            if s.run_id in live
            else s.model_copy(update={"status": "interrupted"})
            if s.run_id in gone
            else s
            for s in summaries
        ]

    def wait_seconds(self, wait_s: float | None) -> float:
        """How long a run tool waits before returning a handle: ``wait_s``, else the configured default."""
        in_range("wait_s", wait_s, 0.0, 86_400.0)
        return self.settings.tool_wait_s if wait_s is None else wait_s

    async def get_run(self, run_id: str) -> tuple[Plan, RunRecord]:
        """A stored run and its plan.

        Raises:
            InputError: no run with that id.
        """
        record = await self.store.get_run(run_id)
        if record is None:
            raise self.no_run(run_id)
        return await self._stored_plan(record.plan_id), record

    async def synthesize(
        self,
        run_id: str | None = None,
        results: list[SubagentResult] | None = None,
        task: str | None = None,
        force: bool = False,
    ) -> Synthesis:
        """Merge a run's (or the given) results into one answer that lists what did not succeed.

        A run's synthesis is stored with it and returned again at no cost, unless ``force`` (or a
        different ``task``) asks for a new one.

        Raises:
            InputError: neither or both of run_id and results, an unknown run, or no task for raw results.
            ModelError: the synthesis model failed.
        """
        if (run_id is None) == (results is None):
            raise InputError("pass exactly one of run_id (from execute_plan) or results (a list of results)")
        graph = None
        if run_id is not None:
            plan, record = await self.get_run(run_id)
            if record.synthesis is not None and not force and task in (None, plan.task):
                return record.synthesis
            results, task, graph = in_plan_order(plan, record.results), task or plan.task, plan.graph()
        if not task or not task.strip():
            raise InputError("task is empty; say what the results should answer")
        if not results:
            raise InputError("there are no results to synthesize")
        return await self._synthesize(self.backend, task, results, run_id, graph)

    async def _synthesize(
        self,
        backend: ModelBackend,
        task: str,
        results: list[SubagentResult],
        run_id: str | None,
        graph: dict[str, list[str]] | None = None,
    ) -> Synthesis:
        """Synthesize, keeping the answer (or a failure's spend) with the run, if there is one.

        ``graph``: the plan's edges, when the results are a plan's (see ``synthesis.synthesize``).
        """
        try:
            with self.telemetry.agent("synthesizer", "synthesis", self.settings.synthesis_model) as span:
                synthesis = await synthesize(backend, self.settings, task, results, graph)
                spent(span, synthesis.usage, synthesis.cost_usd)
        except ModelError as exc:
            if run_id is not None:
                spend = Spend(usage=exc.usage, cost_usd=self._cost(exc.usage, exc.model))
                await self.store.save_synthesis(run_id, None, spend)
            raise
        if run_id is not None:
            await self.store.save_synthesis(
                run_id, synthesis, Spend(usage=synthesis.usage, cost_usd=synthesis.cost_usd)
            )
        return synthesis

    def _cost(self, usage: Usage, model: str | None) -> float:
        return cost_usd(usage, model or self.settings.synthesis_model, self.settings.prices)
