"""What hosts see of the protocol, in both eras: logging levels, tool and prompt descriptions, argument errors."""

from __future__ import annotations

import warnings
from typing import Any, Literal

import pytest
from mcp import Client, MCPError
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.types import INVALID_PARAMS, LoggingMessageNotificationParams

from subagent_mcp.backends.scripted import ScriptedBackend, sample_for_schema
from subagent_mcp.contracts import CompletionRequest, JsonObject
from subagent_mcp.errors import ModelRequestError
from subagent_mcp.mcp_server import create_server
from subagent_mcp.settings import Settings
from subagent_mcp.testing.results import text_of

pytestmark = pytest.mark.anyio

Mode = Literal["auto", "legacy"]


def server(backend: ScriptedBackend | None = None) -> Any:
    return create_server(Settings.from_env({}, env_file=None), backend or ScriptedBackend())


def fetch_fails(request: CompletionRequest) -> JsonObject:
    if request.label == "fetch":
        raise ModelRequestError("Anthropic API rejected the request (400 invalid_request_error): nope")
    return sample_for_schema(request.output_schema)


PLAN = {
    "plan_id": "p-logs",
    "task": "Write a short report",
    "subtasks": [
        {"id": "fetch", "role": "writer", "instructions": "do fetch", "depends_on": []},
        {"id": "other", "role": "writer", "instructions": "do other", "depends_on": []},
    ],
}


class Logs:
    """A client's ``logging_callback`` that keeps every log message it is sent."""

    def __init__(self) -> None:
        self.seen: list[LoggingMessageNotificationParams] = []

    async def __call__(self, params: LoggingMessageNotificationParams) -> None:
        self.seen.append(params)

    def levels(self) -> set[str]:
        return {m.level for m in self.seen}

    def take(self) -> list[str]:
        lines = [f"{m.level}: {m.data}" for m in self.seen]
        self.seen.clear()
        return lines


async def set_level(client: Client, level: Literal["debug", "info", "warning", "error"]) -> None:
    with warnings.catch_warnings():  # the client marks logging/setLevel deprecated: gone at 2026-07-28
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        await client.set_logging_level(level)  # pyright: ignore[reportDeprecated]


async def test_a_2025_client_sees_the_logging_capability_and_may_set_a_level() -> None:
    async with Client(server(), mode="legacy") as c:
        assert c.protocol_version == "2025-11-25"
        assert c.server_capabilities is not None
        assert c.server_capabilities.logging is not None
        await set_level(c, "warning")  # was -32601 Method not found


async def test_a_2025_client_gets_info_until_it_sets_a_level_then_only_messages_at_or_above_it() -> None:
    logs = Logs()
    async with Client(server(ScriptedBackend(fetch_fails)), mode="legacy", logging_callback=logs) as c:
        await c.call_tool("execute_plan", {"plan": PLAN})
        before = logs.take()
        await set_level(c, "warning")
        await c.call_tool("execute_plan", {"plan": PLAN})
        after = logs.take()
    assert any(line.startswith("info: started fetch") for line in before)
    assert any(line.startswith("warning: fetch failed: Anthropic API rejected") for line in before)
    assert after
    assert all(line.startswith("warning: fetch failed") for line in after)


async def test_a_2026_client_gets_log_messages_only_if_it_opts_in_and_only_at_its_level() -> None:
    silent, warned = Logs(), Logs()
    async with Client(server(ScriptedBackend(fetch_fails)), logging_callback=silent) as c:
        assert c.protocol_version == "2026-07-28"
        assert c.server_capabilities is not None
        assert c.server_capabilities.logging is not None
        await c.call_tool("execute_plan", {"plan": PLAN})
    async with Client(server(ScriptedBackend(fetch_fails)), logging_callback=warned, log_level="warning") as c:
        await c.call_tool("execute_plan", {"plan": PLAN})
    assert silent.seen == []
    assert warned.levels() == {"warning"}


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
@pytest.mark.parametrize(
    ("name", "arguments", "message"),
    [("nope", {}, "Unknown prompt: nope"), ("delegate", {}, "Missing required arguments: task")],
)
async def test_an_unknown_prompt_or_a_missing_argument_is_invalid_params_saying_which(
    mode: Mode, name: str, arguments: dict[str, str], message: str
) -> None:
    """The spec's -32602 with the reason; it was -32603 with no reason at 2026-07-28 and code 0 before."""
    async with Client(server(), mode=mode) as c:
        with pytest.raises(MCPError) as raised:
            await c.get_prompt(name, arguments)
        assert (await c.get_prompt("delegate", {"task": "Summarise the logs"})).messages
    assert (raised.value.code, raised.value.message) == (INVALID_PARAMS, message)


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
