"""What the budget tests share: settings sized in tokens against the fake API, a four-part plan, long replies."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from subagent_mcp.backends.scripted import sample_for_schema
from subagent_mcp.contracts import JsonObject, Usage
from subagent_mcp.settings import Settings
from subagent_mcp.testing import FakeAnthropic, FakeReply, FakeRequest, json_reply


def settings_for(fake: FakeAnthropic, **overrides: Any) -> Settings:
    """Budgets sized in tokens: the researchers here search nothing (test_server_tools prices searches)."""
    values: dict[str, Any] = {"server_tools": False, **overrides}
    return Settings(
        anthropic_api_key=SecretStr("sk-ant-test-budget"),
        anthropic_base_url=fake.base_url,
        max_output_tokens=1_000,
        retry_max_wait_s=0,
        **values,
    )


PLAN: JsonObject = {
    "plan_id": "p-budget",
    "task": "Survey four options",
    "subtasks": [
        {"id": f"t{i}", "role": "researcher", "instructions": f"look at option {i}", "depends_on": []} for i in range(4)
    ],
}


def long_answers(request: FakeRequest) -> FakeReply:
    """Schema-valid replies billed near max_tokens, as long answers are."""
    return json_reply(sample_for_schema(request.schema or {}), usage=Usage(input_tokens=400, output_tokens=900))
