"""Server tools (web search, web fetch) per role, against the fake Messages API with the real SDK."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from pydantic import SecretStr

from subagent_mcp.backends.anthropic_tools import WEB_FETCH_TYPE, WEB_SEARCH_TYPE
from subagent_mcp.contracts import DEFAULT_FETCH_CONTENT_TOKENS, Plan, SubagentResult, Usage
from subagent_mcp.core.budget import Budget, Limits
from subagent_mcp.core.pricing import DEFAULT_PRICES, cost_usd
from subagent_mcp.mcp_server import create_server
from subagent_mcp.planning import estimate_plan
from subagent_mcp.role_catalog import RoleCatalog
from subagent_mcp.roles import BUILTIN_ROLES
from subagent_mcp.server_tools import DEFAULT_MAX_USES, WEB_SEARCH_RESULT_TOKENS
from subagent_mcp.settings import Settings
from subagent_mcp.testing import FakeAnthropic, paused_reply, searched_reply, serve_fake_anthropic
from subagent_mcp.testing.results import text_of

pytestmark = pytest.mark.anyio

KEY = "sk-ant-test-server-tools"
FINDINGS = {"summary": "s", "findings": ["f"], "sources": ["https://example.com/1"], "open_questions": []}


def settings_for(fake: FakeAnthropic, **overrides: Any) -> Settings:
    return Settings(
        anthropic_api_key=SecretStr(KEY),
        anthropic_base_url=fake.base_url,
        retry_max_wait_s=0,
        db_path=":memory:",
        **overrides,
    )


async def run_subagent(settings: Settings, role: str) -> SubagentResult:
    async with Client(create_server(settings)) as client:
        result = await client.call_tool("run_subagent", {"role": role, "instructions": "Find the facts"})
    return SubagentResult.model_validate(result.structured_content)


def token_cost(usage: Usage, model: str | None) -> float:
    return cost_usd(usage.model_copy(update={"web_search_requests": 0}), model, DEFAULT_PRICES)


async def test_a_researcher_offers_web_search_and_fetch_and_its_searches_are_counted_and_priced() -> None:
    async with serve_fake_anthropic(api_key=KEY) as fake:
        fake.enqueue(searched_reply(FINDINGS, searches=3))
        result = await run_subagent(settings_for(fake), "researcher")
    (request,) = fake.message_requests
    assert request.body["tools"] == [
        {"type": WEB_SEARCH_TYPE, "name": "web_search", "max_uses": DEFAULT_MAX_USES},
        {
            "type": WEB_FETCH_TYPE,
            "name": "web_fetch",
            "max_uses": DEFAULT_MAX_USES,
            "max_content_tokens": DEFAULT_FETCH_CONTENT_TOKENS,
        },
    ]
    assert request.schema is not None  # structured output is still enforced
    assert result.status == "succeeded"
    assert result.output == FINDINGS
    assert result.usage.web_search_requests == 3
    assert result.usage == fake.billed_usage
    assert result.cost_usd == pytest.approx(token_cost(result.usage, result.model) + 0.03)


async def test_web_fetch_carries_the_max_content_tokens_set_in_the_environment() -> None:
    async with serve_fake_anthropic(api_key=KEY) as fake:
        env = Settings.from_env({"SUBAGENT_MCP_WEB_FETCH_MAX_CONTENT_TOKENS": "2500"}, env_file=None)
        await run_subagent(
            settings_for(fake, web_fetch_max_content_tokens=env.web_fetch_max_content_tokens), "researcher"
        )
    (request,) = fake.message_requests
    fetch = {t["name"]: t for t in request.body["tools"]}["web_fetch"]
    assert (fetch["max_uses"], fetch["max_content_tokens"]) == (DEFAULT_MAX_USES, 2500)


async def test_the_fake_searches_once_by_default_when_web_search_is_offered() -> None:
    async with serve_fake_anthropic(api_key=KEY) as fake:
        result = await run_subagent(settings_for(fake), "researcher")
    assert result.status == "succeeded"
    assert result.usage.web_search_requests == 1
    assert result.cost_usd == pytest.approx(token_cost(result.usage, result.model) + 0.01)


async def test_a_paused_turn_is_continued_with_its_own_content_and_only_the_final_text_is_the_output() -> None:
    async with serve_fake_anthropic(api_key=KEY) as fake:
        paused = paused_reply(searches=2, query="postgres vs sqlite")
        fake.enqueue(paused, searched_reply(FINDINGS, searches=1))
        result = await run_subagent(settings_for(fake), "researcher")
    first, second = fake.message_requests
    assert second.body["messages"][:-1] == first.body["messages"]
    assert second.body["messages"][-1] == {"role": "assistant", "content": list(paused.blocks)}
    assert second.body["tools"] == first.body["tools"]
    assert result.status == "succeeded"
    assert result.output == FINDINGS
    assert result.attempts == 2
    assert result.usage.web_search_requests == 3
    assert result.usage == fake.billed_usage


async def test_a_turn_still_paused_after_five_continuations_fails_with_what_it_spent() -> None:
    async with serve_fake_anthropic(api_key=KEY) as fake:
        fake.enqueue(*[paused_reply() for _ in range(6)], searched_reply(FINDINGS))
        result = await run_subagent(settings_for(fake), "researcher")
    assert len(fake.message_requests) == 6
    assert result.status == "failed"
    assert "pause_turn" in (result.error or "")
    assert result.usage.web_search_requests == 6
    assert result.usage == fake.billed_usage


async def test_a_role_without_server_tools_sends_no_tools() -> None:
    async with serve_fake_anthropic(api_key=KEY) as fake:
        result = await run_subagent(settings_for(fake), "writer")
    (request,) = fake.message_requests
    assert "tools" not in request.body
    assert result.usage.web_search_requests == 0


async def test_server_tools_off_sends_no_tools_and_the_catalog_says_so() -> None:
    settings = Settings.from_env({"SUBAGENT_MCP_SERVER_TOOLS": "off"}, env_file=None)
    assert settings.server_tools is False
    async with serve_fake_anthropic(api_key=KEY) as fake:
        off = settings_for(fake, server_tools=False)
        result = await run_subagent(off, "researcher")
        async with Client(create_server(off)) as client:
            listed = await client.call_tool("list_roles", {})
    (request,) = fake.message_requests
    assert "tools" not in request.body
    assert result.usage.web_search_requests == 0
    researcher = {r.name: r for r in RoleCatalog.model_validate(listed.structured_content).roles}["researcher"]
    assert {t.name: t.status for t in researcher.tools} == {
        "web_search": "off (SUBAGENT_MCP_SERVER_TOOLS=off)",
        "web_fetch": "off (SUBAGENT_MCP_SERVER_TOOLS=off)",
    }


async def test_the_catalog_reports_the_researchers_tools_as_available_with_their_max_uses() -> None:
    async with serve_fake_anthropic(api_key=KEY) as fake, Client(create_server(settings_for(fake))) as client:
        listed = await client.call_tool("list_roles", {})
    roles = {r.name: r for r in RoleCatalog.model_validate(listed.structured_content).roles}
    assert [(t.server_tool, t.status, t.max_uses) for t in roles["researcher"].tools] == [
        ("web_search", "available", DEFAULT_MAX_USES),
        ("web_fetch", "available", DEFAULT_MAX_USES),
    ]
    assert roles["writer"].tools == []


def test_a_calls_worst_case_includes_max_uses_searches_at_a_cent_each() -> None:
    plain = Budget(Limits(), DEFAULT_PRICES).reserve("claude-haiku-5-5", 1_000, 1_000)
    searching = Budget(Limits(), DEFAULT_PRICES).reserve(
        "claude-haiku-5-5", 1_000, 1_000, tool_uses={"web_search_requests": 5, "web_fetch_requests": 5}
    )
    assert plain is not None
    assert searching is not None
    assert searching.cost_usd == pytest.approx(plain.cost_usd + 0.05)  # fetches carry no per-use fee
    assert searching.tokens == plain.tokens


def test_a_plans_worst_case_includes_each_researchers_searches_and_what_its_searches_and_fetches_may_add() -> None:
    plan = Plan.model_validate(
        {
            "plan_id": "p",
            "task": "t",
            "subtasks": [
                {"id": "r", "role": "researcher", "instructions": "look"},
                {"id": "w", "role": "writer", "instructions": "write"},
            ],
        }
    )
    balanced = "claude-sonnet-5-5"  # one input price at any prompt length, so the difference is plain
    on = {t.task_id: t for t in estimate_plan(plan, Settings(subagent_model=balanced), BUILTIN_ROLES).tasks}
    off = {
        t.task_id: t
        for t in estimate_plan(plan, Settings(subagent_model=balanced, server_tools=False), BUILTIN_ROLES).tasks
    }
    content = DEFAULT_MAX_USES * (DEFAULT_FETCH_CONTENT_TOKENS + WEB_SEARCH_RESULT_TOKENS)
    assert on["r"].max_input_tokens == off["r"].max_input_tokens + content
    content_usd = cost_usd(Usage(input_tokens=content), balanced, DEFAULT_PRICES)
    assert on["r"].max_cost_usd == pytest.approx(off["r"].max_cost_usd + DEFAULT_MAX_USES * 0.01 + content_usd)
    assert on["r"].input_tokens == off["r"].input_tokens  # the expected case: what the prompt holds
    assert on["w"] == off["w"]


async def test_a_budget_too_small_for_the_searches_refuses_the_call_before_sending_it() -> None:
    async with serve_fake_anthropic(api_key=KEY) as fake:
        tight = settings_for(fake, max_run_cost_usd=0.04)  # tokens fit; five searches at $0.01 do not
        async with Client(create_server(tight)) as client:
            plan = {"plan_id": "p", "task": "t", "subtasks": [{"id": "r", "role": "researcher", "instructions": "x"}]}
            result = await client.call_tool("execute_plan", {"plan": plan})
    assert "budget:" in text_of(result)
    assert fake.message_requests == []


def test_usage_addition_keeps_server_tool_counts() -> None:
    total = Usage(web_search_requests=2, web_fetch_requests=1) + Usage(web_search_requests=3)
    assert (total.web_search_requests, total.web_fetch_requests) == (5, 1)
