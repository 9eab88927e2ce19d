"""The budget where a call is not what it seems: a reply naming a model with no price, a turn that keeps pausing.

These run the real Anthropic backend against the fake Messages API on 127.0.0.1.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import replace

import anyio
import pytest
from mcp import Client

from budget_setup import PLAN, long_answers, settings_for
from subagent_mcp.backends.anthropic import AnthropicBackend
from subagent_mcp.backends.budgeted import BudgetedBackend, reserved_prompt_tokens
from subagent_mcp.backends.scripted import sample_for_schema
from subagent_mcp.contracts import CompletionRequest, JsonObject, ModelMessage, Plan, RunReport, Usage
from subagent_mcp.core.budget import Budget, Limits
from subagent_mcp.core.pricing import DEFAULT_PRICES, cost_usd
from subagent_mcp.errors import BudgetExceededError
from subagent_mcp.mcp_server import create_server
from subagent_mcp.planning import estimate_plan
from subagent_mcp.roles import BUILTIN_ROLES
from subagent_mcp.testing import FakeReply, FakeRequest, hang_reply, serve_fake_anthropic
from subagent_mcp.testing.results import text_of

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("named", ["", "my-proxy-model"], ids=["empty", "unpriced"])
async def test_a_reply_naming_a_model_with_no_price_is_priced_as_the_requested_one_and_held_to_the_ceiling(
    named: str, caplog: pytest.LogCaptureFixture
) -> None:
    named += f"-{uuid.uuid4().hex[:8]}" if named else ""  # warned once per process: a name no other test sent

    def unpriced(request: FakeRequest) -> FakeReply:
        return replace(long_answers(request), model=named)

    async with serve_fake_anthropic(unpriced) as fake:
        settings = settings_for(fake)
        worst_one = estimate_plan(Plan.model_validate(PLAN), settings, BUILTIN_ROLES).tasks[0].max_cost_usd
        limit = worst_one * 1.5  # room for one call's worst case, not two
        async with Client(create_server(settings)) as client:
            result = await client.call_tool("execute_plan", {"plan": PLAN, "max_cost_usd": limit, "max_concurrency": 1})
    report = RunReport.model_validate(result.structured_content)
    assert [r.status for r in report.results] == ["succeeded", "skipped", "skipped", "skipped"]
    billed = sum(cost_usd(u, r.model, settings.prices) for u, r in zip(fake.billed, fake.message_requests, strict=True))
    assert report.cost_usd == pytest.approx(billed)
    assert 0 < report.cost_usd <= limit
    warnings = [r.getMessage() for r in caplog.records if "which has no price" in r.getMessage()]
    assert len(warnings) <= 1  # once, not per call
    assert not named or warnings == [
        f"a reply named the model {named!r}, which has no price; it is priced as the requested "
        f"{fake.message_requests[0].model!r} (add the model to SUBAGENT_MCP_PRICES to price it as itself)"
    ]


async def test_run_subagent_refuses_a_model_with_no_price_before_any_call() -> None:
    async with serve_fake_anthropic() as fake, Client(create_server(settings_for(fake))) as client:
        result = await client.call_tool(
            "run_subagent", {"role": "writer", "instructions": "Say hi", "model": "my-proxy-model"}
        )
    assert result.is_error
    assert "the model 'my-proxy-model' has no price" in text_of(result)
    assert "SUBAGENT_MCP_PRICES" in text_of(result)
    assert fake.message_requests == []


async def test_a_plan_whose_subtasks_would_run_on_a_model_with_no_price_is_refused_before_any_call() -> None:
    async with serve_fake_anthropic() as fake:
        settings = settings_for(fake, role_models={"researcher": "my-proxy-model"})
        async with Client(create_server(settings)) as client:
            result = await client.call_tool("execute_plan", {"plan": PLAN})
    assert result.is_error
    assert "t0 ('my-proxy-model')" in text_of(result)
    assert "SUBAGENT_MCP_PRICES" in text_of(result)
    assert fake.message_requests == []


def pausing(pauses: int) -> Callable[[FakeRequest], FakeReply]:
    """Replies that pause the turn ``pauses`` times, then end it; each billed its prompt and max_tokens of output."""

    def reply(request: FakeRequest) -> FakeReply:
        continued = sum(1 for m in request.body["messages"] if m["role"] == "assistant")
        return FakeReply(
            text=json.dumps(sample_for_schema(request.schema or {})),
            stop_reason="pause_turn" if continued < pauses else "end_turn",
            output_tokens=request.body["max_tokens"],
        )

    return reply


ONE: JsonObject = {
    "plan_id": "p-paused",
    "task": "Survey one option",
    "subtasks": [{"id": "t0", "role": "researcher", "instructions": "look at option 0", "depends_on": []}],
}


async def test_a_turn_that_keeps_pausing_is_stopped_by_the_ceiling_before_a_message_that_could_cross_it() -> None:
    async with serve_fake_anthropic(pausing(pauses=100)) as fake:
        settings = settings_for(fake)
        worst_one = estimate_plan(Plan.model_validate(ONE), settings, BUILTIN_ROLES).tasks[0].max_cost_usd
        limit = worst_one * 1.05  # one message's worst case, not two
        async with Client(create_server(settings)) as client:
            result = await client.call_tool("execute_plan", {"plan": ONE, "max_cost_usd": limit})
    report = RunReport.model_validate(result.structured_content)
    (only,) = report.results
    assert only.status == "failed"
    assert (only.error or "").startswith("budget:"), only.error
    assert len(fake.message_requests) == only.attempts == 1
    assert report.usage == only.usage == fake.billed_usage
    assert 0 < report.cost_usd <= limit


SEARCH = CompletionRequest(
    model="claude-haiku-5-5",
    system="You answer in JSON.",
    messages=[ModelMessage(role="user", content="Find the facts")],
    output_schema={"type": "object"},
    max_tokens=1_000,
)


@pytest.mark.parametrize(
    ("pauses", "ceiling", "sent"), [(2, 100.0, 3), (100, 2.5, 2)], ids=["continued", "refused-at-the-third"]
)
async def test_the_budget_charges_each_message_of_a_continued_turn_once_and_holds_nothing_after(
    pauses: int, ceiling: float, sent: int
) -> None:
    request = SEARCH
    async with serve_fake_anthropic(pausing(pauses)) as fake:
        one = Budget(Limits(), DEFAULT_PRICES)  # what one message may cost at worst
        one.reserve(request.model, reserved_prompt_tokens(request), request.max_tokens)
        budget = Budget(Limits(max_cost_usd=one.reserved_usd * ceiling), DEFAULT_PRICES)
        async with AnthropicBackend(settings_for(fake)) as inner:
            backend = BudgetedBackend(inner, budget)
            if sent > pauses:
                completion = await backend.complete(request)
                assert completion.usage == fake.billed_usage
            else:
                with pytest.raises(BudgetExceededError, match=r"^budget: ") as caught:
                    await backend.complete(request)
                assert (caught.value.usage, caught.value.attempts) == (fake.billed_usage, sent)
    assert len(fake.message_requests) == sent
    assert budget.spent == fake.billed_usage
    assert budget.spent_usd == pytest.approx(cost_usd(fake.billed_usage, request.model, DEFAULT_PRICES))
    assert budget.spent_usd <= one.reserved_usd * ceiling
    assert (budget.in_flight, budget.reserved_usd, budget.reserved_tokens) == (0, 0.0, 0)


async def test_a_continued_turn_cancelled_mid_flight_keeps_its_billed_messages_on_record() -> None:
    continued = anyio.Event()

    def reply(request: FakeRequest) -> FakeReply:
        if any(m["role"] == "assistant" for m in request.body["messages"]):  # the continuation: held until cancelled
            continued.set()
            return hang_reply()
        return FakeReply(text="{}", stop_reason="pause_turn", usage=Usage(input_tokens=500, output_tokens=300))

    recorded: list[Usage] = []

    async def on_usage(request: CompletionRequest, model: str, usage: Usage) -> None:
        recorded.append(usage)

    budget = Budget(Limits(max_cost_usd=1.0), DEFAULT_PRICES)
    async with serve_fake_anthropic(reply) as fake, AnthropicBackend(settings_for(fake)) as inner:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(BudgetedBackend(inner, budget, on_usage=on_usage).complete, SEARCH)
                await continued.wait()
                tg.cancel_scope.cancel()
    assert recorded == [fake.billed_usage] == [Usage(input_tokens=500, output_tokens=300)]
    assert budget.spent == fake.billed_usage
    assert (budget.in_flight, budget.reserved_usd, budget.reserved_tokens) == (0, 0.0, 0)
