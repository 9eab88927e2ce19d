"""Whatever the API sends back, through a real MCP client: results are stored and deliverable, or a clear failure."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import LoggingMessageNotificationParams, TextResourceContents

from subagent_mcp.contracts import JsonObject, RunReport, SubagentResult
from subagent_mcp.mcp_server import create_server
from subagent_mcp.settings import Settings
from subagent_mcp.testing import (
    FakeAnthropic,
    FakeReply,
    FakeRequest,
    error_reply,
    json_reply,
    refusal_reply,
    serve_fake_anthropic,
    text_reply,
    trickle_reply,
)
from subagent_mcp.testing.results import text_of

pytestmark = pytest.mark.anyio

KEY = "sk-ant-test-SECRET-untrusted-31"
PLAN: JsonObject = {
    "plan_id": "p-untrusted",
    "task": "Write a short report",
    "subtasks": [
        {"id": "a", "role": "writer", "instructions": "part a", "depends_on": []},
        {"id": "b", "role": "writer", "instructions": "part b", "depends_on": ["a"]},
    ],
}


def settings_for(fake: FakeAnthropic, db: Path, key: str = KEY, **more: str) -> Settings:
    env = {
        "ANTHROPIC_API_KEY": key,
        "ANTHROPIC_BASE_URL": fake.base_url,
        "SUBAGENT_MCP_DB_PATH": str(db),
        "SUBAGENT_MCP_RETRY_MAX_WAIT_S": "0",
        **more,
    }
    return Settings.from_env(env, env_file=None)


async def resource_text(client: Client, uri: str) -> str:
    contents = (await client.read_resource(uri)).contents[0]
    assert isinstance(contents, TextResourceContents)
    return contents.text


async def test_a_key_pasted_with_a_trailing_crlf_works_and_shows_nowhere(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    db = tmp_path / "runs.db"
    notes: list[Any] = []

    async def on_log(params: LoggingMessageNotificationParams) -> None:
        notes.append(params.data)

    async with serve_fake_anthropic(api_key=KEY) as fake:
        server = create_server(settings_for(fake, db, key=KEY + "\r\n"))
        async with Client(server, logging_callback=on_log, log_level="debug") as c:
            result = await c.call_tool("execute_plan", {"plan": PLAN})
            report = RunReport.model_validate(result.structured_content)
            resource = await resource_text(c, f"subagent://runs/{report.run_id}")
    assert report.status == "succeeded", text_of(result)
    assert {r.headers["authorization"] for r in fake.message_requests} == {f"Bearer {KEY}"}
    stored = db.read_bytes().decode("latin-1")
    for text in (text_of(result), str(result.structured_content), resource, str(notes), caplog.text, stored):
        assert KEY not in text


def nested(depth: int) -> str:
    """A writer's reply whose ``text`` holds arrays nested so that the whole is ``depth`` levels deep."""
    return '{"summary": "s", "text": ' + "[" * (depth - 1) + '"t"' + "]" * (depth - 1) + "}"


async def test_a_run_whose_replies_hold_a_surrogate_and_deep_nesting_ends_stored_readable_and_resumable(
    tmp_path: Path,
) -> None:
    plan: JsonObject = {
        **PLAN,
        "subtasks": [
            {"id": "odd", "role": "writer", "instructions": "reply with a lone surrogate", "depends_on": []},
            {"id": "deep", "role": "writer", "instructions": "reply nested 250 deep", "depends_on": []},
        ],
    }

    def reply(request: FakeRequest) -> FakeReply:
        if request.subtask_id == "odd":
            return text_reply('{"summary": "bad \\udcff", "text": "t"}')
        if request.subtask_id == "deep":
            return text_reply(nested(250))  # the repair turn too
        return json_reply({"summary": "s", "text": "t"})

    async with (
        serve_fake_anthropic(reply, api_key=KEY) as fake,
        Client(create_server(settings_for(fake, tmp_path / "runs.db"))) as c,
    ):
        result = await c.call_tool("execute_plan", {"plan": plan})
        report = RunReport.model_validate(result.structured_content)
        resource = json.loads(await resource_text(c, f"subagent://runs/{report.run_id}"))
        listed = json.loads(await resource_text(c, "subagent://runs"))
        fake.handler = lambda _: json_reply({"summary": "s", "text": "flat"})
        resumed = await c.call_tool("resume_run", {"run_id": report.run_id})
    results = {r.task_id: r for r in report.results}
    assert (report.status, results["odd"].status, results["deep"].status) == ("partial", "succeeded", "failed")
    assert results["odd"].output == {"summary": "bad \ufffd", "text": "t"}
    assert "more than 64 levels deep" in (results["deep"].error or "")
    assert results["deep"].attempts == 2  # the repair turn was given
    assert resource["status"] == "partial"
    assert [r["status"] for r in listed["runs"]] == ["partial"]
    assert not resumed.is_error, text_of(resumed)
    assert RunReport.model_validate(resumed.structured_content).status == "succeeded"


async def test_run_subagent_against_a_trickling_reply_fails_as_a_timeout_and_closes_the_connection(
    tmp_path: Path,
) -> None:
    async with serve_fake_anthropic(lambda _: trickle_reply(every_s=0.05), api_key=KEY) as fake:
        timeouts = {"SUBAGENT_MCP_REQUEST_TIMEOUT_S": "0.5", "SUBAGENT_MCP_MAX_RETRIES": "1"}
        async with Client(create_server(settings_for(fake, tmp_path / "runs.db", **timeouts))) as c:
            with anyio.fail_after(20):
                result = await c.call_tool("run_subagent", {"role": "writer", "instructions": "Write"})
        with anyio.fail_after(5):
            await fake.wait_abandoned(2)
    out = SubagentResult.model_validate(result.structured_content)
    assert out.status == "failed"
    assert "Anthropic API timed out: no response within 0.5 s on all 2 attempts" in (out.error or "")
    assert out.attempts == 2
    assert fake.abandoned == [0, 1]


async def test_a_reply_reporting_negative_usage_fails_its_subtask_and_cannot_loosen_the_budget(
    tmp_path: Path,
) -> None:
    negative = FakeReply(
        text='{"summary": "s", "text": "t"}', raw_usage={"input_tokens": -1_199_999_999, "output_tokens": 1}
    )
    async with serve_fake_anthropic(api_key=KEY) as fake:
        fake.enqueue(negative)
        async with Client(create_server(settings_for(fake, tmp_path / "runs.db"))) as c:
            result = await c.call_tool("execute_plan", {"plan": PLAN})
    report = RunReport.model_validate(result.structured_content)
    first = report.results[0]
    assert (report.status, first.status) == ("failed", "failed")
    assert "impossible usage: input_tokens = -1199999999" in (first.error or "")
    assert report.cost_usd >= 0
    assert report.usage.input_tokens >= 0


def echo_in_refusal(request: FakeRequest) -> FakeReply:
    return refusal_reply(f"the request was signed with {KEY}")


def echo_in_error(request: FakeRequest) -> FakeReply:
    return error_reply(400, f"invalid x-api-key {KEY}")


@pytest.mark.parametrize(
    ("handler", "batch", "said"),
    [
        (echo_in_refusal, False, "refused this request (general_harms: the request was signed with [redacted])"),
        (echo_in_refusal, True, "refused this request (general_harms: the request was signed with [redacted])"),
        (echo_in_error, True, "the batch request errored (invalid_request_error: invalid x-api-key [redacted])"),
    ],
    ids=["live-refusal", "batch-refusal", "batch-error"],
)
async def test_an_api_that_echoes_the_key_in_a_refusal_or_a_batch_error_never_shows_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, handler: Any, batch: bool, said: str
) -> None:
    caplog.set_level(logging.DEBUG)
    db = tmp_path / "runs.db"
    async with serve_fake_anthropic(handler, api_key=KEY) as fake:
        server = create_server(settings_for(fake, db, SUBAGENT_MCP_BATCH_POLL_S="0.002"))
        async with Client(server) as c:
            with anyio.fail_after(20):
                result = await c.call_tool("execute_plan", {"plan": PLAN, "batch": batch})
            report = RunReport.model_validate(result.structured_content)
            resource = await resource_text(c, f"subagent://runs/{report.run_id}")
    first = report.results[0]
    assert (first.task_id, first.status) == ("a", "failed")
    assert said in (first.error or "")
    stored = db.read_bytes().decode("latin-1")
    for text in (text_of(result), str(result.structured_content), resource, caplog.text, stored):
        assert KEY not in text
