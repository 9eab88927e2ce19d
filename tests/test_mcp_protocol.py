"""What hosts see of the protocol, in both eras: logging levels, tool and prompt descriptions, argument errors."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from mcp import Client

from subagent_mcp.backends.scripted import ScriptedBackend
from subagent_mcp.mcp_server import create_server
from subagent_mcp.settings import Settings
from subagent_mcp.testing.results import text_of

pytestmark = pytest.mark.anyio

Mode = Literal["auto", "legacy"]


def server(backend: ScriptedBackend | None = None) -> Any:
    return create_server(Settings.from_env({}, env_file=None), backend or ScriptedBackend())


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_no_tool_or_prompt_description_keeps_its_source_indentation(mode: Mode) -> None:
    async with Client(server(), mode=mode) as c:
        tools = (await c.list_tools()).tools
        prompts = (await c.list_prompts()).prompts
    described = {t.name: t.description or "" for t in tools} | {p.name: p.description or "" for p in prompts}
    assert all(described.values()), [name for name, text in described.items() if not text]
    indented = {name: line for name, text in described.items() for line in text.splitlines() if line[:1].isspace()}
    assert indented == {}
    assert "\n\nSpends planner-model tokens only" in described["plan_task"]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_arguments_of_the_wrong_type_get_one_line_per_problem_saying_what_to_pass(mode: Mode) -> None:
    backend = ScriptedBackend()
    bad_plan = {"plan_id": "p", "task": "t", "subtasks": [{"id": "A!", "role": "writer", "extra": 1}]}
    async with Client(server(backend), mode=mode) as c:
        result = await c.call_tool("execute_plan", {"plan": bad_plan, "max_concurrency": "many", "timeout_s": [1]})
    text = text_of(result)
    assert result.is_error
    assert text.splitlines() == [
        "execute_plan was called with invalid arguments; fix them and call it again:",
        "- plan.subtasks[0].id: should match pattern '^[a-z0-9][a-z0-9_-]{0,47}$' (got the string 'A!')",
        "- plan.subtasks[0].instructions: required; add it",
        "- plan.subtasks[0].extra: not a known field; remove it",
        "- max_concurrency: should be a valid integer, unable to parse string as an integer (got the string 'many')",
        "- timeout_s: should be a valid number (got an array)",
    ]
    assert backend.seen == []


async def test_a_plan_that_breaks_its_own_rules_is_refused_in_one_line_without_a_pydantic_dump() -> None:
    cyclic = {
        "plan_id": "p",
        "task": "t",
        "subtasks": [
            {"id": "a", "role": "writer", "instructions": "x", "depends_on": ["b"]},
            {"id": "b", "role": "writer", "instructions": "y", "depends_on": ["a"]},
        ],
    }
    async with Client(server()) as c:
        result = await c.call_tool("execute_plan", {"plan": cyclic})
    assert result.is_error
    assert text_of(result).splitlines()[1:] == ["- plan: dependency cycle: a -> b -> a; a plan must be acyclic"]
    for dump in ("validation error", "input_value", "errors.pydantic.dev", "Arguments"):
        assert dump not in text_of(result)
