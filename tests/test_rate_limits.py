"""A run against a rate-limited API slows down and finishes, instead of losing subtasks to 429s.

The fake Messages API on 127.0.0.1 admits 4 requests at once and answers any more 429 with a short
retry-after, as a per-key concurrency limit does; the server talks to it with the real SDK.
"""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from pydantic import SecretStr

from subagent_mcp.backends.scripted import sample_for_schema
from subagent_mcp.contracts import JsonObject, RunReport
from subagent_mcp.mcp_server import create_server
from subagent_mcp.settings import Settings
from subagent_mcp.testing import FakeReply, FakeRequest, json_reply, serve_fake_anthropic
from subagent_mcp.testing.results import text_of

pytestmark = pytest.mark.anyio

ADMITTED = 4
FAN_OUT: JsonObject = {
    "plan_id": "p-fan-out",
    "task": "Survey 48 options",
    "subtasks": [
        {"id": f"t{i}", "role": "researcher", "instructions": f"look at option {i}", "depends_on": []}
        for i in range(48)
    ],
}


def answer_after_a_moment(request: FakeRequest) -> FakeReply:
    """A schema-valid answer 20 ms after the request, so requests overlap as real ones do."""
    return json_reply(sample_for_schema(request.schema or {})).after(0.02)


def settings_for(base_url: str, **overrides: Any) -> Settings:
    return Settings(
        anthropic_api_key=SecretStr("sk-ant-test-rate"),
        anthropic_base_url=base_url,
        db_path=":memory:",
        max_subtasks=48,
        max_concurrency=16,
        **overrides,
    )


async def run_fan_out(**overrides: Any) -> tuple[RunReport, int]:
    """Execute the 48-task fan-out at max_concurrency 16; the report and the number of 429s sent."""
    async with serve_fake_anthropic(answer_after_a_moment, rate_limit_above=ADMITTED) as fake:
        async with Client(create_server(settings_for(fake.base_url, **overrides))) as client:
            result = await client.call_tool("execute_plan", {"plan": FAN_OUT, "max_concurrency": 16})
        assert not result.is_error, text_of(result)
        return RunReport.model_validate(result.structured_content), len(fake.rate_limited)


async def test_a_fan_out_wider_than_the_apis_limit_finishes_with_every_subtask_succeeded() -> None:
    report, rate_limited = await run_fan_out()
    assert report.status == "succeeded", [r.error for r in report.results if r.status != "succeeded"][:3]
    assert rate_limited < len(FAN_OUT["subtasks"])  # the run slowed down instead of hammering the API


async def test_with_adaptive_concurrency_off_the_same_run_loses_subtasks_to_429s() -> None:
    report, rate_limited = await run_fan_out(adaptive_concurrency=False)
    failed = [r for r in report.results if r.status == "failed"]
    assert failed
    assert all("rate limited (429) on all 4 attempts" in (r.error or "") for r in failed)
    assert rate_limited > len(FAN_OUT["subtasks"])
