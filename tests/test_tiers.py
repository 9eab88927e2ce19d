"""A subtask's tier picks its model: the planner offers it, the estimate names it, the run sends it."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client

from subagent_mcp.backends.scripted import ScriptedBackend, as_completion, sample_for_schema
from subagent_mcp.contracts import CompletionRequest, JsonObject, Plan, RunReport
from subagent_mcp.core.pricing import cost_usd
from subagent_mcp.mcp_server import create_server
from subagent_mcp.planning import planner_request
from subagent_mcp.prompts import subtask_id_of
from subagent_mcp.roles import BUILTIN_ROLES
from subagent_mcp.settings import Settings
from subagent_mcp.testing.results import text_of

pytestmark = pytest.mark.anyio

MODELS = {
    "SUBAGENT_MCP_SUBAGENT_MODEL": "claude-haiku-test",
    "SUBAGENT_MCP_STRONG_SUBAGENT_MODEL": "claude-sonnet-test",
    "SUBAGENT_MCP_DEEP_MODEL": "claude-opus-deep-test",
}


def settings(**env: str) -> Settings:
    return Settings.from_env({**MODELS, **env}, env_file=None)


DRAFT: JsonObject = {
    "subtasks": [
        {"id": "list", "role": "coder", "instructions": "list the files", "depends_on": [], "tier": "fast"},
        {"id": "fix", "role": "writer", "instructions": "fix the bug", "depends_on": ["list"], "tier": "balanced"},
        {"id": "prove", "role": "analyst", "instructions": "prove it", "depends_on": ["fix"], "tier": "deep"},
        {"id": "note", "role": "writer", "instructions": "write a note", "depends_on": []},
    ],
}


def reply(request: CompletionRequest) -> JsonObject:
    return DRAFT if request.label == "plan" else sample_for_schema(request.output_schema)


def models_sent(backend: ScriptedBackend) -> dict[str, str]:
    return {subtask_id_of(r.messages[0].content): r.model for r in backend.seen if r.label not in {"plan", "synthesis"}}


def test_the_planner_schema_offers_the_three_tiers_as_optional_and_its_brief_says_when_to_use_each() -> None:
    request = planner_request("task", list(BUILTIN_ROLES.values()), 5, settings())
    items = request.output_schema["properties"]["subtasks"]["items"]
    assert items["properties"]["tier"] == {"type": "string", "enum": ["fast", "balanced", "deep"]}
    assert "tier" not in items["required"]
    assert "- tier: fast (lookups, lists), balanced (code, careful analysis), deep (hardest" in request.system


def test_the_planner_is_not_offered_tiers_when_no_tier_can_change_an_offered_roles_model() -> None:
    roles = list(BUILTIN_ROLES.values())
    pinned = settings(SUBAGENT_MCP_ROLE_MODELS=",".join(f"{name}=claude-pinned" for name in BUILTIN_ROLES))
    one_model = Settings.from_env(
        {
            "SUBAGENT_MCP_SUBAGENT_MODEL": "claude-one",
            "SUBAGENT_MCP_STRONG_SUBAGENT_MODEL": "claude-one",
            "SUBAGENT_MCP_DEEP_MODEL": "claude-one",
        },
        env_file=None,
    )
    for s in (pinned, one_model):
        request = planner_request("task", roles, 5, s)
        assert "tier" not in request.output_schema["properties"]["subtasks"]["items"]["properties"]
        assert "tier" not in request.system
    one_free = settings(SUBAGENT_MCP_ROLE_MODELS="coder=claude-pinned")  # the others can still move
    assert (
        "tier"
        in planner_request("task", roles, 5, one_free).output_schema["properties"]["subtasks"]["items"]["properties"]
    )


def test_the_role_override_wins_then_the_tier_then_the_roles_own_model_then_its_default_tier() -> None:
    s = settings(SUBAGENT_MCP_ROLE_MODELS="writer=claude-pinned")
    assert s.model_for_role("writer", "fast", None, "deep") == "claude-pinned"
    assert s.model_for_role("coder", "strong", "claude-from-agent-file", "fast") == "claude-haiku-test"
    assert s.model_for_role("coder", "strong", "claude-from-agent-file", None) == "claude-from-agent-file"
    assert s.model_for_role("coder", "strong", None, None) == "claude-sonnet-test"


def test_the_deep_tier_defaults_to_the_planner_model() -> None:
    s = Settings.from_env({"SUBAGENT_MCP_PLANNER_MODEL": "claude-opus-planner"}, env_file=None)
    assert s.deep_model is None
    assert s.model_for_tier("deep") == "claude-opus-planner"


async def test_each_tier_runs_on_its_model_and_the_estimate_names_it_before_the_run() -> None:
    backend = ScriptedBackend(reply)
    async with Client(create_server(settings(), backend)) as c:
        planned = await c.call_tool("plan_task", {"task": "Fix the bug"})
        assert not planned.is_error, text_of(planned)
        plan = Plan.model_validate(planned.structured_content)
        assert plan.estimate is not None
        estimated = {t.task_id: t.model for t in plan.estimate.tasks}
        ran = await c.call_tool("execute_plan", {"plan": plan.model_dump(mode="json")})
    assert not ran.is_error, text_of(ran)
    expected = {
        "list": "claude-haiku-test",  # a strong-tier role marked fast goes to the cheap model
        "fix": "claude-sonnet-test",  # a fast-tier role marked balanced goes to the strong one
        "prove": "claude-opus-deep-test",
        "note": "claude-haiku-test",  # no tier: the role's default (writer is fast)
    }
    assert estimated == expected
    assert models_sent(backend) == expected
    report = RunReport.model_validate(ran.structured_content)
    assert {r.task_id: r.model for r in report.results} == expected
    assert "prove [analyst, deep]" in text_of(planned)


async def test_a_host_can_change_a_tier_in_the_plan_and_a_role_model_override_still_wins() -> None:
    backend = ScriptedBackend(reply)
    plan: dict[str, Any] = {"plan_id": "p-tiers", "task": "Fix the bug", **DRAFT}
    plan["subtasks"] = [{**s, "tier": "deep"} if s["id"] == "list" else s for s in DRAFT["subtasks"]]
    pinned = settings(SUBAGENT_MCP_ROLE_MODELS="analyst=claude-sonnet-pinned")  # priced: an unpriced one is refused
    async with Client(create_server(pinned, backend)) as c:
        ran = await c.call_tool("execute_plan", {"plan": plan})
    assert not ran.is_error, text_of(ran)
    sent = models_sent(backend)
    assert sent["list"] == "claude-opus-deep-test"
    assert sent["prove"] == "claude-sonnet-pinned"  # marked deep, but the analyst role is pinned


async def test_an_unknown_tier_is_refused_before_any_call() -> None:
    backend = ScriptedBackend(reply)
    plan = {"plan_id": "p-bad", "task": "t", "subtasks": [{"id": "a", "role": "writer", "instructions": "x",
                                                           "tier": "huge"}]}  # fmt: skip
    async with Client(create_server(settings(), backend)) as c:
        ran = await c.call_tool("execute_plan", {"plan": plan})
    assert ran.is_error
    assert "tier" in text_of(ran)
    assert backend.seen == []


def invalid_on(model: str) -> Any:
    """A reply that breaks the schema on ``model`` (repair turn included) and is valid elsewhere."""

    def reply(request: CompletionRequest) -> JsonObject:
        if request.label == "plan":
            return DRAFT
        return {"nothing": "useful"} if request.model == model else sample_for_schema(request.output_schema)

    return reply


ONE_FAST_TASK: JsonObject = {
    "plan_id": "p-esc",
    "task": "t",
    "subtasks": [{"id": "a", "role": "writer", "instructions": "x", "depends_on": [], "tier": "fast"}],
}


async def test_with_escalation_on_output_still_invalid_after_its_repair_is_tried_once_on_the_next_tier() -> None:
    backend = ScriptedBackend(invalid_on("claude-haiku-test"))
    async with Client(create_server(settings(SUBAGENT_MCP_ESCALATE="1"), backend)) as c:
        ran = await c.call_tool("execute_plan", {"plan": ONE_FAST_TASK})
    report = RunReport.model_validate(ran.structured_content)
    (result,) = report.results
    assert [r.model for r in backend.seen] == ["claude-haiku-test", "claude-haiku-test", "claude-sonnet-test"]
    assert (result.status, result.model, result.escalated_from) == ("succeeded", "claude-sonnet-test",
                                                                    "claude-haiku-test")  # fmt: skip
    assert result.attempts == 3
    reply = invalid_on("claude-haiku-test")
    billed = [as_completion(reply(r), r).usage for r in backend.seen]
    assert result.usage == billed[0] + billed[1] + billed[2]  # the failed tier's tokens still count
    prices = settings().prices
    each_at_its_price = cost_usd(billed[0] + billed[1], "claude-haiku-test", prices) + cost_usd(
        billed[2], "claude-sonnet-test", prices
    )
    assert result.cost_usd == pytest.approx(each_at_its_price)
    assert report.cost_usd == pytest.approx(result.cost_usd)


async def test_without_escalation_or_for_a_pinned_role_invalid_output_fails_on_its_own_tier() -> None:
    for env in ({}, {"SUBAGENT_MCP_ESCALATE": "1", "SUBAGENT_MCP_ROLE_MODELS": "writer=claude-haiku-test"}):
        backend = ScriptedBackend(invalid_on("claude-haiku-test"))
        async with Client(create_server(settings(**env), backend)) as c:
            ran = await c.call_tool("execute_plan", {"plan": ONE_FAST_TASK})
        (result,) = RunReport.model_validate(ran.structured_content).results
        assert [r.model for r in backend.seen] == ["claude-haiku-test", "claude-haiku-test"], env
        assert (result.status, result.escalated_from, result.attempts) == ("failed", None, 2)
