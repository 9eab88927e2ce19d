"""plan_task and run_subagent through an in-memory MCP client and the real Anthropic backend on a fake API."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from mcp import Client
from pydantic import SecretStr

from subagent_mcp.contracts import Plan, SubagentResult, Usage
from subagent_mcp.demo import demo_plan_draft
from subagent_mcp.mcp_server import create_server
from subagent_mcp.settings import Settings
from subagent_mcp.store import SqliteStore
from subagent_mcp.testing import (
    FakeAnthropic,
    error_reply,
    json_reply,
    refusal_reply,
    serve_fake_anthropic,
    text_reply,
)
from subagent_mcp.testing.results import text_of

pytestmark = pytest.mark.anyio

KEY = "sk-ant-test-SECRET-inmemory-77"


def settings_for(fake: FakeAnthropic, key: str = KEY) -> Settings:
    return Settings(
        anthropic_api_key=SecretStr(key), anthropic_base_url=fake.base_url, retry_max_wait_s=0, db_path=":memory:"
    )


async def test_plan_task_gets_its_plan_through_native_structured_outputs() -> None:
    async with serve_fake_anthropic(api_key=KEY) as fake:
        fake.enqueue(json_reply(demo_plan_draft()))
        async with Client(create_server(settings_for(fake))) as c:
            result = await c.call_tool("plan_task", {"task": "Pick a database"})
    assert not result.is_error, text_of(result)
    plan = Plan.model_validate(result.structured_content)
    assert len(plan.subtasks) == 4
    assert plan.estimate is not None
    (request,) = fake.message_requests
    assert request.model == Settings().planner_model
    assert request.schema is not None
    assert request.schema["properties"]["subtasks"]["type"] == "array"
    assert plan.planning is not None
    assert plan.planning.usage == fake.billed_usage
    assert "Planning took" in text_of(result)


async def test_the_planner_is_asked_only_for_the_plan_not_a_summary_of_it() -> None:
    """Every planner call runs on the top tier: a sentence on the approach would be billed at its output price."""
    async with serve_fake_anthropic(api_key=KEY) as fake:
        fake.enqueue(
            json_reply({**demo_plan_draft(), "summary": "one sentence on the approach"}), json_reply(demo_plan_draft())
        )
        async with Client(create_server(settings_for(fake))) as c:
            result = await c.call_tool("plan_task", {"task": "Pick a database"})
    assert not result.is_error, text_of(result)
    first, repaired = fake.message_requests
    assert first.schema is not None
    assert first.schema["required"] == ["subtasks"]
    assert "summary" not in first.schema["properties"]
    assert "summary" not in first.system_text
    assert "'summary' was unexpected" in json.dumps(repaired.body["messages"])  # a reply with one is repaired


async def test_run_subagent_repairs_bad_json_once_and_counts_both_attempts() -> None:
    async with serve_fake_anthropic(api_key=KEY) as fake:
        fake.enqueue(text_reply("not json at all"), json_reply({"summary": "s", "text": "t"}))
        async with Client(create_server(settings_for(fake))) as c:
            result = await c.call_tool("run_subagent", {"role": "writer", "instructions": "Write"})
    out = SubagentResult.model_validate(result.structured_content)
    assert (out.status, out.attempts, out.output) == ("succeeded", 2, {"summary": "s", "text": "t"})
    assert out.usage == fake.billed_usage


async def test_a_rate_limit_that_outlasts_the_retries_says_so_and_what_was_retried() -> None:
    async with serve_fake_anthropic(api_key=KEY) as fake:
        fake.handler = lambda _: error_reply(429, "slow down", retry_after_ms=1)
        async with Client(create_server(settings_for(fake))) as c:
            result = await c.call_tool("run_subagent", {"role": "writer", "instructions": "Write"})
    assert result.is_error
    assert "rate limited (429) on all 4 attempts" in text_of(result)
    assert len(fake.message_requests) == 4


async def test_the_key_never_appears_in_a_result_or_a_log_line_even_when_rejected(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with (
        serve_fake_anthropic(api_key="sk-ant-the-right-one") as fake,
        Client(create_server(settings_for(fake))) as c,
    ):
        plan = await c.call_tool("plan_task", {"task": "anything"})
        run = await c.call_tool("run_subagent", {"role": "writer", "instructions": "x"})
    assert plan.is_error
    assert "401" in text_of(plan)
    assert "authentication_error" in text_of(run)
    assert len(fake.message_requests) == 2  # 401 is not retried
    for text in (text_of(plan), text_of(run), str(run.structured_content), caplog.text):
        assert KEY not in text


async def test_a_refusal_fails_the_subagent_at_once_and_passes_on_the_apis_reason() -> None:
    async with serve_fake_anthropic(api_key=KEY) as fake:
        fake.enqueue(refusal_reply("this looks like malware", category="cyber"))
        async with Client(create_server(settings_for(fake))) as c:
            result = await c.call_tool("run_subagent", {"role": "coder", "instructions": "Write a worm"})
    out = SubagentResult.model_validate(result.structured_content)
    assert (out.status, out.attempts) == ("failed", 1)
    assert "refused this request (cyber: this looks like malware)" in (out.error or "")
    assert len(fake.message_requests) == 1


async def test_a_planner_that_fails_for_good_says_what_it_was_billed_and_keeps_it_on_record(tmp_path: Path) -> None:
    cut_off = text_reply(
        '{"summary": "unfinished', stop_reason="max_tokens", usage=Usage(input_tokens=450, output_tokens=8192)
    )
    db = tmp_path / "runs.db"
    async with serve_fake_anthropic(api_key=KEY) as fake:
        fake.enqueue(cut_off, cut_off)  # the reply and its repair turn both run out of tokens
        settings = settings_for(fake).model_copy(update={"db_path": str(db)})
        async with Client(create_server(settings)) as c:
            result = await c.call_tool("plan_task", {"task": "Pick a database"})
    assert result.is_error
    assert "The planner's calls were billed 900 in / 16,384 out tokens" in text_of(result)
    assert ". The planner's calls were billed" in text_of(result)  # a sentence of its own
    store = SqliteStore.open(db)
    try:
        assert store.failed_planning().usage == fake.billed_usage
    finally:
        store.close()
