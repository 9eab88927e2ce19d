"""The use cases behind the tools: plan a task, run one subagent (and, built on them, whole runs).

Wires the core, a model backend and the roles together; knows nothing of MCP, so the CLI, the MCP
server and the tests all drive the same code.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from pydantic import ValidationError

from . import prompts
from .backends.base import ModelBackend
from .contracts import CompletionRequest, JsonObject, ModelMessage, Plan, SubagentResult, Subtask
from .core.pricing import cost_usd
from .errors import InputError, ModelError
from .roles import BUILTIN_ROLES, Role, get_role
from .settings import Settings
from .structured import check_output_schema, complete_json

PLANNER_MAX_TOKENS = 8192


@dataclass
class Service:
    """One server's worth of state: settings, roles and the (lazily created) model backend."""

    settings: Settings
    backend_override: ModelBackend | None = None
    roles: dict[str, Role] = field(default_factory=lambda: dict(BUILTIN_ROLES))
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
        return Plan.model_validate({"plan_id": plan_id, "task": task, **result.output}, context={"max_subtasks": limit})

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

    async def run_subtask(
        self, subtask: Subtask, task: str | None, context: str | None, model: str | None = None
    ) -> SubagentResult:
        """Run ``subtask`` through its role; model failures become a ``failed`` result with usage."""
        role = get_role(subtask.role, self.roles)
        chosen = model or self.settings.model_for_role(role.name, role.tier)
        request = CompletionRequest(
            model=chosen,
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
        started = time.monotonic()
        try:
            out = await complete_json(self.backend, request)
        except ModelError as exc:
            return SubagentResult(
                task_id=subtask.id,
                role=role.name,
                status="failed",
                error=str(exc),
                attempts=exc.attempts,
                usage=exc.usage,
                cost_usd=cost_usd(exc.usage, exc.model or chosen, self.settings.prices),
                model=exc.model or chosen,
                duration_s=time.monotonic() - started,
            )
        return SubagentResult(
            task_id=subtask.id,
            role=role.name,
            status="succeeded",
            output=out.output,
            attempts=out.attempts,
            usage=out.usage,
            cost_usd=cost_usd(out.usage, out.model, self.settings.prices),
            model=out.model,
            duration_s=time.monotonic() - started,
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
