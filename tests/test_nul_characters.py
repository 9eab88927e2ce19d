"""A NUL character (U+0000) from outside, on SQLite and PostgreSQL alike (PostgreSQL text cannot hold one).

A caller's NUL is refused before any token is spent, with a tool error naming the field; a model's NUL
(a reply, an API error body) becomes U+FFFD where replies are read, so both stores save the same thing.
Through real MCP clients, the real SDK on the fake API and both real databases.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp import Client
from pydantic import SecretStr

from subagent_mcp.backends.scripted import sample_for_schema
from subagent_mcp.contracts import JsonObject
from subagent_mcp.demo import demo_plan_draft
from subagent_mcp.mcp_server import create_server
from subagent_mcp.settings import Settings
from subagent_mcp.testing import (
    FakeAnthropic,
    FakeReply,
    FakeRequest,
    json_reply,
    serve_fake_anthropic,
)
from subagent_mcp.testing.results import text_of

pytestmark = pytest.mark.anyio

KEY = "sk-ant-test-nul-characters"
NUL = "\x00"
REPLACED = "\ufffd"
REFUSED = "contains a NUL character (U+0000), which cannot be stored; remove it"


def settings_for(fake: FakeAnthropic, db_location: str) -> Settings:
    where: dict[str, Any] = (
        {"db_url": SecretStr(db_location)} if db_location.startswith("postgresql") else {"db_path": db_location}
    )
    return Settings(anthropic_api_key=SecretStr(KEY), anthropic_base_url=fake.base_url, retry_max_wait_s=0, **where)


def plan_with(**subtask: Any) -> JsonObject:
    """A one-subtask plan whose subtask has ``subtask``'s fields on top of a valid one."""
    return {
        "plan_id": "p-nul",
        "task": "Write a short report",
        "subtasks": [{"id": "a", "role": "writer", "instructions": "Write it", **subtask}],
    }


def poisoned(value: Any) -> Any:
    """``value`` with a NUL after the first character of every string value."""
    if isinstance(value, str):
        return f"{value[:1]}{NUL}{value[1:]}"
    if isinstance(value, dict):
        return {k: poisoned(v) for k, v in value.items()}  # pyright: ignore[reportUnknownVariableType]
    if isinstance(value, list):
        return [poisoned(v) for v in value]  # pyright: ignore[reportUnknownVariableType]
    return value


def holds_no_nul(text: str) -> bool:
    """True if ``text`` (JSON or not) carries no NUL, raw or as the escape ``\\u0000``."""
    return NUL not in text and "\\u0000" not in text


def plain_replies(request: FakeRequest) -> FakeReply:
    """The demo's plan for the planner, the fake's schema-valid default for everything else."""
    if "Plan the user's task" in request.system_text:
        return json_reply(demo_plan_draft())
    return json_reply(sample_for_schema(request.schema or {}))


CALLER_TEXT = [
    ("orchestrate", {"task": f"Compare{NUL} two databases"}, "task:"),
    ("plan_task", {"task": f"Pick{NUL} a database"}, "task:"),
    ("plan_task", {"task": "Pick a database", "roles": ["writer", f"wri{NUL}ter"]}, "roles[1]:"),
    ("execute_plan", {"plan": {**plan_with(), "task": f"Write{NUL}"}}, "plan.task:"),
    ("execute_plan", {"plan": plan_with(instructions=f"Write{NUL} it")}, "plan.subtasks[0].instructions:"),
    ("execute_plan", {"plan": plan_with(id=f"a{NUL}")}, "plan.subtasks[0].id:"),
    ("execute_plan", {"plan": plan_with(role=f"writer{NUL}")}, "plan.subtasks[0].role:"),
    (
        "execute_plan",
        {"plan": plan_with(output_schema={"type": "object", "properties": {f"x{NUL}": {"type": "string"}}})},
        "plan.subtasks[0].output_schema.properties: a key",
    ),
    ("run_subagent", {"role": "writer", "instructions": f"Write{NUL}"}, "instructions:"),
    (
        "run_subagent",
        {"role": "writer", "instructions": "Write", "output_schema": {"type": "object", "description": f"x{NUL}"}},
        "output_schema.description:",
    ),
    ("synthesize", {"results": [], "task": f"Answer{NUL}"}, "task:"),
    ("wait_run", {"run_id": f"run{NUL}", "wait_s": 0}, "run_id:"),
]


@pytest.mark.parametrize(("tool", "arguments", "where"), CALLER_TEXT, ids=[c[2].split(":")[0] for c in CALLER_TEXT])
async def test_a_nul_in_a_callers_text_is_refused_naming_the_field_before_any_model_call(
    db_location: str, tool: str, arguments: JsonObject, where: str
) -> None:
    with anyio.fail_after(20):
        async with (
            serve_fake_anthropic(plain_replies, api_key=KEY) as fake,
            Client(create_server(settings_for(fake, db_location))) as c,
        ):
            result = await c.call_tool(tool, arguments)
            runs = await c.call_tool("list_runs", {})
    assert result.is_error, text_of(result)
    assert text_of(result).startswith(f"{tool} was called with invalid arguments; fix them and call it again:")
    assert f"- {where} {REFUSED}" in text_of(result)
    assert holds_no_nul(text_of(result))
    assert fake.requests == []  # not a token spent
    assert not runs.is_error, text_of(runs)
    assert runs.structured_content == {"runs": []}  # nothing was stored
