"""What a plan will ask of the models, before any is called: requests, checks and the cost estimate.

Pure functions of a plan, the settings and the roles, so the estimate shown to a host and the
requests later sent are built by the same code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import cast

from . import prompts
from .backends.budgeted import request_input_tokens, reserved_content_tokens
from .contracts import (
    SUBTASK_TIERS,
    CompletionRequest,
    JsonObject,
    ModelMessage,
    Plan,
    PlanEstimate,
    Subtask,
    TaskEstimate,
)
from .core.caching import cached_prefix, marks_for
from .core.context import estimate_tokens
from .core.dag_checks import some_of
from .core.estimate import SUMMARY_TOKENS, context_tokens, estimate_call, total, with_batch_cost
from .core.graph import topological_order
from .core.pricing import batch_prices, unpriced_models
from .errors import InputError, PlanError
from .roles import Role, get_role
from .schemas import check_output_schema
from .server_tools import role_server_tools, worst_case_uses
from .settings import Settings

PLANNER_MAX_TOKENS = 8192
SYNTHESIS_MAX_TOKENS = 8192
SYNTHESIS_EXPECTED_OUTPUT_TOKENS = 1500


def planner_request(task: str, offered: list[Role], max_subtasks: int, settings: Settings) -> CompletionRequest:
    """The planner's call: the offered roles, the size limits, and the plan's JSON Schema."""
    tiers = tiers_matter(offered, settings)
    return CompletionRequest(
        model=settings.planner_model,
        system=prompts.planner_system(offered, max_subtasks, server_tools=settings.server_tools, tiers=tiers),
        messages=[ModelMessage(role="user", content=task)],
        output_schema=prompts.planner_schema([r.name for r in offered], tiers=tiers),
        max_tokens=PLANNER_MAX_TOKENS,
        label="plan",
    )


def planner_draft(draft: JsonObject, max_output_tokens: int) -> JsonObject:
    """The planner's reply as a plan draft: ids made slugs (``depends_on`` renamed alike), size hints capped at
    what a subagent may write. Cheaper than a repair turn; anything else is left for ``Plan`` to refuse."""
    subtasks = draft.get("subtasks")
    if not isinstance(subtasks, list):
        return draft
    items = [cast("JsonObject", s) for s in cast("list[object]", subtasks) if isinstance(s, dict)]
    renamed = {i: _slug(i) for s in items if isinstance(i := s.get("id"), str)}
    if len(set(renamed.values())) < len(renamed):  # two ids would become one: let Plan name the problem
        renamed = {}
    fixed: list[JsonObject] = []
    for s in items:
        item = dict(s)
        if isinstance(item.get("id"), str):
            item["id"] = renamed.get(item["id"], item["id"])
        deps = item.get("depends_on")
        if isinstance(deps, list):
            item["depends_on"] = [renamed.get(d, d) if isinstance(d, str) else d for d in cast("list[object]", deps)]
        size = item.get("expected_output_tokens")
        if isinstance(size, int) and not isinstance(size, bool) and size > max_output_tokens:
            item["expected_output_tokens"] = max_output_tokens
        fixed.append(item)
    return {**draft, "subtasks": fixed if len(fixed) == len(subtasks) else subtasks}


def _slug(text: str) -> str:
    """``text`` as a subtask id (``SLUG_PATTERN``): lowercase, other characters as "-", at most 48; unchanged if
    nothing is left."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", text.strip().lower()).lstrip("-_")[:48]
    return slug or text


def tiers_matter(offered: Iterable[Role], settings: Settings) -> bool:
    """Whether a subtask's ``tier`` can change the model of some offered role: not when every role is pinned
    (SUBAGENT_MCP_ROLE_MODELS) or every tier names the model the role has anyway. The planner is told of
    tiers only then: a choice that changes nothing costs top-tier tokens on every plan."""
    for role in offered:
        models = {settings.model_for_role(role.name, role.tier, role.model, tier) for tier in (None, *SUBTASK_TIERS)}
        if len(models) > 1:
            return True
    return False


def subtask_request(
    subtask: Subtask,
    task: str | None,
    context: str | None,
    settings: Settings,
    roles: Mapping[str, Role],
    model: str | None = None,
    *,
    reused: bool = False,
) -> CompletionRequest:
    """The model request for ``subtask``: its role's prompt and schema, the shared task, its inputs, its model.

    ``reused``: other subtasks of the run send the same prefix (see ``reused_prefixes``), so it is
    marked for the prompt cache when caching is on and the prefix is long enough.
    """
    role = get_role(subtask.role, dict(roles))
    model = model or subtask_model(subtask, settings, roles)
    system = prompts.subagent_system(role)
    schema = subtask.output_schema or role.output_schema
    user, shared = prompts.subagent_user(subtask.id, subtask.instructions, task, context)
    marks = marks_for(
        model,
        json.dumps(schema) + system,
        user[:shared],
        settings.prompt_cache_ttl,
        reused=reused and settings.prompt_cache,
    )
    return CompletionRequest(
        model=model,
        system=system,
        messages=[ModelMessage(role="user", content=user)],
        output_schema=schema,
        max_tokens=settings.max_output_tokens,
        label=subtask.id,
        cache=marks,
        server_tools=role_server_tools(role, settings),
        web_fetch_max_content_tokens=settings.web_fetch_max_content_tokens,
    )


def subtask_model(subtask: Subtask, settings: Settings, roles: Mapping[str, Role]) -> str:
    """The model ``subtask`` runs on: its role's override, else its tier's, else its role's (``model_for_role``)."""
    role = get_role(subtask.role, dict(roles))
    return settings.model_for_role(role.name, role.tier, role.model, subtask.tier)


def escalation_model(subtask: Subtask, settings: Settings, roles: Mapping[str, Role]) -> str | None:
    """The next tier's model above the one ``subtask`` runs on, if escalation is on and its role is not pinned."""
    role = get_role(subtask.role, dict(roles))
    if not settings.escalate or role.name in settings.role_models:
        return None
    current = subtask_model(subtask, settings, roles)
    ladder = [settings.model_for_tier(t) for t in SUBTASK_TIERS]
    above = ladder[max(i for i, m in enumerate(ladder) if m == current) + 1 :] if current in ladder else []
    return next((m for m in above if m != current), None)


def prefix_key(subtask: Subtask, settings: Settings, roles: Mapping[str, Role]) -> tuple[str, str, str]:
    """What must match for two subtasks to share a cached prefix: model, system prompt and output schema."""
    role = get_role(subtask.role, dict(roles))
    schema = subtask.output_schema or role.output_schema
    return subtask_model(subtask, settings, roles), role.name, json.dumps(schema, sort_keys=True)


def reused_prefixes(subtasks: Iterable[Subtask], settings: Settings, roles: Mapping[str, Role]) -> set[str]:
    """Ids of the subtasks whose prompt prefix (model, role, schema and task) another of ``subtasks`` repeats."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for s in subtasks:
        groups.setdefault(prefix_key(s, settings, roles), []).append(s.id)
    return {task_id for ids in groups.values() if len(ids) > 1 for task_id in ids}


def estimate_plan(plan: Plan, settings: Settings, roles: Mapping[str, Role], *, batch: bool = False) -> PlanEstimate:
    """Expected and worst-case cost of running ``plan`` and synthesizing it, priced like the budget.

    ``batch``: the subtasks priced as Message Batches (half price); the synthesis stays a live call.
    Either way ``batch_cost_usd`` says what batch mode is expected to cost.

    A subtask whose prefix is marked for the cache is expected to write it if it is the first of its
    group (in topological order) and to read it otherwise; its worst case writes it.
    """
    budget = settings.context_budget_tokens
    reused = reused_prefixes(plan.subtasks, settings, roles)
    written: set[str] = set()
    by_id: dict[str, TaskEstimate] = {}
    for task_id in topological_order(plan.graph()):
        subtask = plan.subtask(task_id)
        request = subtask_request(subtask, plan.task, None, settings, roles, reused=task_id in reused)
        deps = [by_id[d] for d in subtask.depends_on]
        own = request_input_tokens(request)
        fetched = reserved_content_tokens(request)  # the worst case of its searches and fetches, as the budget's
        prefix = cached_prefix(request)
        cached = estimate_tokens(prefix) if prefix else 0
        first = prefix not in written
        written.add(prefix)
        by_id[task_id] = estimate_call(
            task_id,
            request.model,
            (
                own + context_tokens([d.output_tokens for d in deps], budget),
                own + fetched + context_tokens([d.max_output_tokens for d in deps], budget),
            ),
            subtask.expected_output_tokens or roles[subtask.role].expected_output_tokens,
            request.max_tokens,
            batch_prices(settings.prices) if batch else settings.prices,
            cached=(0, cached) if first else (cached, 0),
            tool_uses=worst_case_uses(request.server_tools),
        )
    calls = list(by_id.values())
    shown = prompts.synthesis_task(plan.task)
    base = estimate_tokens(prompts.synthesis_system(incomplete=True) + shown + json.dumps(prompts.SYNTHESIS_SCHEMA))
    summarized = summarized_for_synthesis(plan, settings, roles)
    read = [SUMMARY_TOKENS if c.task_id in summarized else c.output_tokens for c in calls]
    synthesis = estimate_call(
        "synthesis",
        settings.synthesis_model,
        (  # expected: used results by their summary; worst: every result whole (what a failed user leaves)
            base + context_tokens(read, budget),
            base + context_tokens([c.max_output_tokens for c in calls], budget),
        ),
        SYNTHESIS_EXPECTED_OUTPUT_TOKENS,
        SYNTHESIS_MAX_TOKENS,
        settings.prices,
    )
    estimate = total([by_id[s.id] for s in plan.subtasks], plan.graph(), synthesis)
    return with_batch_cost(estimate, settings.prices, batch)


def summarized_for_synthesis(plan: Plan, settings: Settings, roles: Mapping[str, Role]) -> set[str]:
    """The subtasks the synthesizer is expected to read by their summary: used by others, with a summary field."""
    if settings.synthesis_reads != "final":
        return set()
    used = {d for s in plan.subtasks for d in s.depends_on}
    schemas = {s.id: s.output_schema or get_role(s.role, dict(roles)).output_schema for s in plan.subtasks}
    return {task_id for task_id in used if "summary" in schemas.get(task_id, {}).get("properties", {})}


def check_runnable(plan: Plan, settings: Settings, roles: Mapping[str, Role]) -> None:
    """Refuse a plan this server cannot run, naming the subtasks at fault, before any token is spent.

    Raises:
        PlanError: more subtasks than SUBAGENT_MCP_MAX_PLAN_SUBTASKS, unknown roles, a model with no price,
            an unusable output_schema, or an expected output longer than a subagent's max_tokens.
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
    check_priced(plan, settings, roles)
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


def check_priced(plan: Plan, settings: Settings, roles: Mapping[str, Role]) -> None:
    """Refuse a plan with a subtask whose model (or escalation model) has no price: no budget could limit it.

    Raises:
        PlanError: naming the subtasks and models at fault, and SUBAGENT_MCP_PRICES.
    """
    models = {
        s.id: [m for m in (subtask_model(s, settings, roles), escalation_model(s, settings, roles)) if m is not None]
        for s in plan.subtasks
    }
    at_fault = {task_id: unpriced_models(ms, settings.prices) for task_id, ms in models.items()}
    at_fault = {task_id: ms for task_id, ms in at_fault.items() if ms}
    if at_fault:
        listing = some_of([f"{task_id} ({', '.join(map(repr, ms))})" for task_id, ms in at_fault.items()])
        raise PlanError(
            f"subtasks would run on models with no price, whose cost no budget could count or limit: {listing}; "
            f"add their prices to SUBAGENT_MCP_PRICES or use a priced model",
            ids=list(at_fault),
        )


def check_model_priced(model: str, settings: Settings) -> None:
    """Refuse a call to ``model`` when it has no price: what it costs could not be counted or limited.

    Raises:
        InputError: naming the model and SUBAGENT_MCP_PRICES.
    """
    if unpriced_models([model], settings.prices):
        raise InputError(
            f"the model {model!r} has no price, so what its calls cost could not be counted or limited; "
            "add its price to SUBAGENT_MCP_PRICES or use a priced model"
        )


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
