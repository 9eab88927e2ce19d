"""What web fetches add to a prompt is bounded (``max_content_tokens``) and reserved, so a run stays within its ceiling.

The fake Messages API cuts each fetched text page to the request's ``max_content_tokens`` and bills it as input,
as the API does; a PDF it leaves whole, as the API bounds only text. Real SDK, real MCP sessions.
"""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from pydantic import SecretStr

from subagent_mcp.backends.anthropic import AnthropicBackend
from subagent_mcp.backends.budgeted import BudgetedBackend, reserved_content_tokens, reserved_prompt_tokens
from subagent_mcp.backends.scripted import sample_for_schema
from subagent_mcp.contracts import CompletionRequest, JsonObject, ModelMessage, Plan, RunReport
from subagent_mcp.core.budget import Budget, Limits
from subagent_mcp.core.pricing import DEFAULT_PRICES, cost_usd
from subagent_mcp.errors import BudgetExceededError
from subagent_mcp.mcp_server import create_server
from subagent_mcp.planning import estimate_plan
from subagent_mcp.roles import BUILTIN_ROLES
from subagent_mcp.server_tools import DEFAULT_MAX_USES
from subagent_mcp.settings import Settings
from subagent_mcp.testing import (
    FakeAnthropic,
    FakeReply,
    FakeRequest,
    fetched_reply,
    paused_fetch_reply,
    serve_fake_anthropic,
)
from subagent_mcp.testing.results import text_of

pytestmark = pytest.mark.anyio

KEY = "sk-ant-test-fetched-content"
HUGE_PAGE_TOKENS = 100_000
"""Each page the model fetches here: far more than the cap lets into the prompt."""

PLAN: JsonObject = {
    "plan_id": "p-fetch",
    "task": "Read these long pages",
    "subtasks": [
        {"id": f"r{i}", "role": "researcher", "instructions": f"read https://example.com/{i}", "depends_on": []}
        for i in range(4)
    ],
}


def settings_for(fake: FakeAnthropic, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"web_fetch_max_content_tokens": 30_000, **overrides}  # fetches: most of a call's bill
    return Settings(anthropic_api_key=SecretStr(KEY), anthropic_base_url=fake.base_url, retry_max_wait_s=0, **values)


def fetching(*, pdf: bool = False) -> Any:
    """Replies whose model fetched ``max_uses`` huge pages, then answered."""

    def reply(request: FakeRequest) -> FakeReply:
        answer = sample_for_schema(request.schema or {})
        return fetched_reply(answer, fetches=DEFAULT_MAX_USES, tokens=HUGE_PAGE_TOKENS, pdf=pdf)

    return reply


async def run_plan(settings: Settings, limit: float) -> tuple[RunReport, str]:
    async with Client(create_server(settings)) as client:
        result = await client.call_tool("execute_plan", {"plan": PLAN, "max_cost_usd": limit})
    return RunReport.model_validate(result.structured_content), text_of(result)


def billed_usd(fake: FakeAnthropic) -> float:
    return sum(cost_usd(u, r.model, DEFAULT_PRICES) for r, u in fake.answered)


async def test_researchers_fetching_huge_pages_end_within_max_cost_usd_and_the_rest_are_refused_unsent() -> None:
    async with serve_fake_anthropic(fetching(), api_key=KEY) as fake:
        settings = settings_for(fake)
        worst_one = estimate_plan(Plan.model_validate(PLAN), settings, BUILTIN_ROLES).tasks[0].max_cost_usd
        limit = worst_one * 1.5  # room for one call's worst case and part of another's
        report, _ = await run_plan(settings, limit)
    tools = fake.message_requests[0].body["tools"]
    assert {"name": "web_fetch", "max_content_tokens": 30_000}.items() <= tools[1].items()
    assert all(u.input_tokens > DEFAULT_MAX_USES * 30_000 for u in fake.billed)  # each page billed, cut to the cap
    succeeded = [r for r in report.results if r.status == "succeeded"]
    refused = [r for r in report.results if r.status != "succeeded"]
    assert succeeded
    assert refused
    assert all((r.error or "").startswith("budget:") for r in refused), [r.error for r in refused]
    assert len(fake.message_requests) == len(succeeded)  # a refused call sends nothing
    assert report.cost_usd == pytest.approx(billed_usd(fake))
    assert 0 < report.cost_usd <= limit
    assert report.over_budget is None


async def test_a_paused_turn_that_keeps_fetching_is_stopped_before_a_message_that_could_cross_the_ceiling() -> None:
    def reply(request: FakeRequest) -> FakeReply:
        done = sum(1 for m in request.body["messages"] if m["role"] == "assistant") * DEFAULT_MAX_USES
        return paused_fetch_reply(fetches=DEFAULT_MAX_USES, tokens=HUGE_PAGE_TOKENS, start=done)

    request = CompletionRequest(
        model="claude-sonnet-5-5",
        system="You answer in JSON.",
        messages=[ModelMessage(role="user", content="Read these pages")],
        output_schema={"type": "object"},
        max_tokens=1_000,
        server_tools={"web_fetch": DEFAULT_MAX_USES},
        web_fetch_max_content_tokens=10_000,
    )
    one = Budget(Limits(), DEFAULT_PRICES)  # what the first message may cost at worst
    one.reserve(request.model, reserved_prompt_tokens(request) + reserved_content_tokens(request), request.max_tokens)
    ceiling = one.reserved_usd * 5  # a second message fits; a third, re-reading ten pages, would not
    budget = Budget(Limits(max_cost_usd=ceiling), DEFAULT_PRICES)
    async with serve_fake_anthropic(reply, api_key=KEY) as fake, AnthropicBackend(settings_for(fake)) as inner:
        with pytest.raises(BudgetExceededError, match=r"^budget: ") as caught:
            await BudgetedBackend(inner, budget).complete(request)
    first, second = fake.message_requests
    (resent,) = [m["content"] for m in second.body["messages"] if m["role"] == "assistant"]
    assert sum(b["type"] == "web_fetch_tool_result" for b in resent) == DEFAULT_MAX_USES
    assert first.body["tools"] == [
        {"type": "web_fetch_20260318", "name": "web_fetch", "max_uses": DEFAULT_MAX_USES, "max_content_tokens": 10_000}
    ]
    assert fake.billed[1].input_tokens > 2 * DEFAULT_MAX_USES * 10_000  # re-read the first's pages, fetched five more
    assert caught.value.attempts == 2
    assert budget.spent == caught.value.usage == fake.billed_usage
    assert budget.spent_usd == pytest.approx(cost_usd(fake.billed_usage, request.model, DEFAULT_PRICES))
    assert budget.spent_usd <= ceiling
    assert (budget.in_flight, budget.reserved_usd, budget.reserved_tokens) == (0, 0.0, 0)


async def test_a_run_billed_past_its_ceiling_by_pdfs_the_cap_does_not_bound_says_so_in_its_report() -> None:
    async with serve_fake_anthropic(fetching(pdf=True), api_key=KEY) as fake:
        settings = settings_for(fake, web_fetch_max_content_tokens=10_000)
        worst_one = estimate_plan(Plan.model_validate(PLAN), settings, BUILTIN_ROLES).tasks[0].max_cost_usd
        limit = worst_one * 1.5
        report, text = await run_plan(settings, limit)
    assert report.cost_usd == pytest.approx(billed_usd(fake))
    assert report.cost_usd > limit  # five whole PDFs: more than the call's reserved worst case
    said = (
        f"Over budget: this run billed ${report.cost_usd:.4f}, ${report.cost_usd - limit:.4f} over its "
        f"max_cost_usd of ${limit:.4f}. A call billed more than the worst case reserved for it, most likely fetched "
        "or searched web content beyond its allowance (a PDF, which max_content_tokens does not bound); lower the "
        "role's max_uses or SUBAGENT_MCP_WEB_FETCH_MAX_CONTENT_TOKENS."
    )
    assert report.over_budget == said
    assert said in text  # the text a host shows says it too
    assert all((r.error or "").startswith("budget:") for r in report.results if r.status != "succeeded")
