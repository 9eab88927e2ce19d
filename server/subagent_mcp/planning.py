"""What a plan will ask of the models, before any is called: requests, checks and the cost estimate.

Pure functions of a plan, the settings and the roles, so the estimate shown to a host and the
requests later sent are built by the same code.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import prompts
from .backends.budgeted import request_input_tokens
from .contracts import CompletionRequest, ModelMessage, Plan, PlanEstimate, Subtask, TaskEstimate, some_of
from .core.context import estimate_tokens
from .core.estimate import context_tokens, estimate_call, total
from .core.graph import topological_order
from .errors import InputError, PlanError
from .roles import Role, get_role
from .schemas import check_output_schema
from .settings import Settings

PLANNER_MAX_TOKENS = 8192
SYNTHESIS_MAX_TOKENS = 8192
SYNTHESIS_EXPECTED_OUTPUT_TOKENS = 1500


def planner_request(task: str, offered: list[Role], max_subtasks: int, settings: Settings) -> CompletionRequest:
    """The planner's call: the offered roles, the size limits, and the plan's JSON Schema."""
    most = settings.max_output_tokens
    return CompletionRequest(
        model=settings.planner_model,
        system=prompts.planner_system(offered, max_subtasks, most),
        messages=[ModelMessage(role="user", content=task)],
        output_schema=prompts.planner_schema([r.name for r in offered], most, max_subtasks),
        max_tokens=PLANNER_MAX_TOKENS,
        label="plan",
    )


def subtask_request(
    subtask: Subtask,
    task: str | None,
    context: str | None,
    settings: Settings,
    roles: Mapping[str, Role],
    model: str | None = None,
) -> CompletionRequest:
    """The model request for ``subtask``: its role's prompt and schema, its inputs, its model."""
    role = get_role(subtask.role, dict(roles))
    return CompletionRequest(
        model=model or settings.model_for_role(role.name, role.tier),
        system=prompts.subagent_system(role),
        messages=[
            ModelMessage(role="user", content=prompts.subagent_user(subtask.id, subtask.instructions, task, context))
        ],
        output_schema=subtask.output_schema or role.output_schema,
        max_tokens=settings.max_output_tokens,
        label=subtask.id,
    )


def estimate_plan(plan: Plan, settings: Settings, roles: Mapping[str, Role]) -> PlanEstimate:
    """Expected and worst-case cost of running ``plan`` and synthesizing it, priced like the budget."""
    budget = settings.context_budget_tokens
    by_id: dict[str, TaskEstimate] = {}
    for task_id in topological_order(plan.graph()):
        subtask = plan.subtask(task_id)
        request = subtask_request(subtask, plan.task, None, settings, roles)
        deps = [by_id[d] for d in subtask.depends_on]
        own = request_input_tokens(request)
        by_id[task_id] = estimate_call(
            task_id,
            request.model,
            (
                own + context_tokens([d.output_tokens for d in deps], budget),
                own + context_tokens([d.max_output_tokens for d in deps], budget),
            ),
            subtask.expected_output_tokens or roles[subtask.role].expected_output_tokens,
            request.max_tokens,
            settings.prices,
        )
    calls = list(by_id.values())
    base = estimate_tokens(prompts.SYNTHESIS_SYSTEM + plan.task)
    synthesis = estimate_call(
        "synthesis",
        settings.synthesis_model,
        (
            base + context_tokens([c.output_tokens for c in calls], budget),
            base + context_tokens([c.max_output_tokens for c in calls], budget),
        ),
        SYNTHESIS_EXPECTED_OUTPUT_TOKENS,
        SYNTHESIS_MAX_TOKENS,
        settings.prices,
    )
    return total([by_id[s.id] for s in plan.subtasks], plan.graph(), synthesis)


def check_runnable(plan: Plan, settings: Settings, roles: Mapping[str, Role]) -> None:
    """Refuse a plan this server cannot run, naming the subtasks at fault, before any token is spent.

    Raises:
        PlanError: more subtasks than SUBAGENT_MCP_MAX_PLAN_SUBTASKS, unknown roles, an unusable
            output_schema, or an expected output longer than a subagent's max_tokens.
    """
    largest = max(settings.max_plan_subtasks, settings.max_subtasks)  # a plan the planner made always fits
    if len(plan.subtasks) > largest:
        raise PlanError(
            f"the plan has {len(plan.subtasks)} subtasks, more than the server's maximum of {largest:,} "
            "(SUBAGENT_MCP_MAX_PLAN_SUBTASKS); split it into smaller plans or raise the setting"
        )
    unknown = [s for s in plan.subtasks if s.role not in roles]
    if unknown:
        listing = some_of([f"{s.id} (role {s.role!r})" for s in unknown])
        raise PlanError(
            f"unknown roles in subtasks: {listing}; available roles: {', '.join(sorted(roles))}",
            ids=[s.id for s in unknown],
        )
    most = settings.max_output_tokens
    too_long = [s for s in plan.subtasks if s.expected_output_tokens is not None and s.expected_output_tokens > most]
    if too_long:
        listing = some_of([f"{s.id} (~{s.expected_output_tokens:,})" for s in too_long])
        raise PlanError(
            f"subtasks expect more output than a subagent may write ({most:,} tokens, SUBAGENT_MCP_MAX_OUTPUT_TOKENS): "
            f"{listing}; split them or raise the limit",
            ids=[s.id for s in too_long],
        )
    check_schemas(plan)


def check_schemas(plan: Plan) -> None:
    """Refuse a plan whose subtask output schemas break the schema policy (``schemas.check_output_schema``).

    Raises:
        PlanError: naming the first subtask whose output_schema is unusable.
    """
    for s in plan.subtasks:
        if s.output_schema is not None:
            try:
                check_output_schema(s.output_schema)
            except InputError as exc:
                raise PlanError(f"subtask {s.id}: {exc}", ids=[s.id]) from None
