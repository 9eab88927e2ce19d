"""The tools through a real in-memory MCP client, with the scripted backend behind the seam."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Literal

import pytest
from inline_snapshot import snapshot
from mcp import Client

from subagent_mcp.backends.scripted import ScriptedBackend
from subagent_mcp.contracts import CompletionRequest, JsonObject, Plan, SubagentResult
from subagent_mcp.demo import demo_reply
from subagent_mcp.errors import ModelRequestError
from subagent_mcp.mcp_server import create_server
from subagent_mcp.settings import Settings
from subagent_mcp.testing.results import text_of

pytestmark = pytest.mark.anyio


def settings(**overrides: object) -> Settings:
    return Settings.from_env({}, env_file=None, **overrides)


@asynccontextmanager
async def client(backend: ScriptedBackend | None = None, **overrides: object) -> AsyncGenerator[Client]:
    async with Client(create_server(settings(**overrides), backend)) as c:
        yield c


async def test_a_misspelt_argument_is_refused_naming_the_one_meant_not_dropped_for_the_default() -> None:
    backend = ScriptedBackend()
    async with client(backend) as c:
        result = await c.call_tool("plan_task", {"task": "Compare", "max_subtask": 3, "x" * 500: 1})
    assert result.is_error
    assert "- max_subtask: not an argument of plan_task; did you mean max_subtasks?" in text_of(result)
    assert f"- {'x' * 60}…: not an argument of plan_task (it takes max_subtasks, roles, task)" in text_of(result)
    assert backend.seen == []  # nothing was planned on defaults


async def test_a_cost_ceiling_of_zero_is_refused_in_plain_dollars() -> None:
    async with client(ScriptedBackend()) as c:
        plan = {"plan_id": "p", "task": "t", "subtasks": [{"id": "a", "role": "writer", "instructions": "x"}]}
        result = await c.call_tool("execute_plan", {"plan": plan, "max_cost_usd": 0})
    assert result.is_error
    assert "max_cost_usd must be above 0 and at most 1,000,000,000 (USD), got 0" in text_of(result)


async def test_run_tools_publish_the_ranges_the_server_enforces_where_a_host_reads_them() -> None:
    async with client(ScriptedBackend()) as c:
        tools = {t.name: t.input_schema["properties"] for t in (await c.list_tools()).tools}
    assert tools["plan_task"]["max_subtasks"]["minimum"] == 1
    assert "SUBAGENT_MCP_MAX_SUBTASKS" in tools["orchestrate"]["max_subtasks"]["description"]
    concurrency = tools["execute_plan"]["max_concurrency"]
    assert (concurrency["minimum"], concurrency["maximum"]) == (1, 1024)
    assert tools["execute_plan"]["timeout_s"]["maximum"] == 86_400
    assert tools["execute_plan"]["max_cost_usd"]["exclusiveMinimum"] == 0


async def test_both_tools_are_listed_with_their_schemas() -> None:
    async with client(ScriptedBackend()) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
    assert set(tools) >= {"plan_task", "run_subagent"}
    assert tools["plan_task"].input_schema == snapshot(
        {
            "type": "object",
            "properties": {
                "task": {
                    "description": "The task to decompose, stated fully.",
                    "title": "Task",
                    "type": "string",
                },
                "max_subtasks": {
                    "anyOf": [{"type": "integer"}, {"type": "null"}],
                    "default": None,
                    "description": "At most this many subtasks: 1 to SUBAGENT_MCP_MAX_SUBTASKS (default 12).",
                    "minimum": 1,
                    "title": "Max Subtasks",
                },
                "roles": {
                    "anyOf": [{"items": {"type": "string"}, "type": "array"}, {"type": "null"}],
                    "default": None,
                    "description": "Only use these roles (default: all).",
                    "title": "Roles",
                },
            },
            "required": ["task"],
            "title": "plan_taskArguments",
        }
    )
    assert tools["run_subagent"].input_schema == snapshot(
        {
            "type": "object",
            "properties": {
                "role": {
                    "description": "researcher, coder, reviewer, writer, analyst, or a role list_roles shows.",
                    "title": "Role",
                    "type": "string",
                },
                "instructions": {
                    "description": "What the subagent must do, self-contained.",
                    "title": "Instructions",
                    "type": "string",
                },
                "context": {
                    "anyOf": [{"type": "string"}, {"type": "null"}],
                    "default": None,
                    "description": "Extra material the subagent should use.",
                    "title": "Context",
                },
                "output_schema": {
                    "anyOf": [{"additionalProperties": True, "type": "object"}, {"type": "null"}],
                    "default": None,
                    "description": "JSON Schema (type object) for the output; role default if null.",
                    "title": "Output Schema",
                },
                "model": {
                    "anyOf": [{"type": "string"}, {"type": "null"}],
                    "default": None,
                    "description": "Model id (default: the role's model); it must have a price (SUBAGENT_MCP_PRICES).",
                    "title": "Model",
                },
            },
            "required": ["role", "instructions"],
            "title": "run_subagentArguments",
        }
    )
    assert tools["plan_task"].output_schema is not None
    assert tools["plan_task"].output_schema["title"] == "Plan"
    assert tools["run_subagent"].output_schema is not None
    assert tools["run_subagent"].output_schema["title"] == "SubagentResult"


async def test_plan_task_returns_a_validated_plan_as_structured_content_and_text() -> None:
    backend = ScriptedBackend(demo_reply)
    async with client(backend) as c:
        result = await c.call_tool("plan_task", {"task": "Compare SQLite and Postgres for a desktop app"})
    assert not result.is_error
    plan = Plan.model_validate(result.structured_content)
    assert [s.id for s in plan.subtasks] == ["research-a", "research-b", "analyse", "write-up"]
    assert plan.task == "Compare SQLite and Postgres for a desktop app"
    assert "analyse [analyst] (after research-a, research-b)" in text_of(result)
    assert backend.seen[0].label == "plan"
    assert backend.seen[0].model == settings().planner_model


async def test_the_planners_expected_output_lengths_reach_the_plan_its_text_and_its_estimate() -> None:
    draft = {
        "subtasks": [
            {"id": "facts", "role": "researcher", "instructions": "x", "depends_on": [], "expected_output_tokens": 200},
            {
                "id": "report",
                "role": "writer",
                "instructions": "y",
                "depends_on": ["facts"],
                "expected_output_tokens": 3000,
            },
        ],
    }
    backend = ScriptedBackend(lambda _: draft)
    async with client(backend) as c:
        result = await c.call_tool("plan_task", {"task": "Write a report"})
    assert not result.is_error, text_of(result)
    plan = Plan.model_validate(result.structured_content)
    assert [s.expected_output_tokens for s in plan.subtasks] == [200, 3000]
    assert plan.estimate is not None
    assert [t.output_tokens for t in plan.estimate.tasks] == [200, 3000]
    assert "report [writer] (after facts) ~3,000 tokens: y" in text_of(result)


async def test_an_invalid_plan_from_the_model_gets_one_repair_then_a_clear_error() -> None:
    cyclic = {
        "subtasks": [
            {"id": "a", "role": "writer", "instructions": "x", "depends_on": ["b"]},
            {"id": "b", "role": "writer", "instructions": "y", "depends_on": ["a"]},
        ],
    }
    backend = ScriptedBackend(lambda _: cyclic)
    async with client(backend) as c:
        result = await c.call_tool("plan_task", {"task": "anything"})
    assert result.is_error
    assert "dependency cycle" in text_of(result)
    assert len(backend.seen) == 2
    assert "dependency cycle: " in backend.seen[1].messages[-1].content


async def test_a_planned_subtask_longer_than_a_subagent_may_write_is_sized_at_the_limit_without_a_repair_turn() -> None:
    too_long = {"id": "a", "role": "writer", "instructions": "x", "depends_on": [], "expected_output_tokens": 50_000}
    backend = ScriptedBackend(lambda _: {"subtasks": [too_long]})
    async with client(backend) as c:
        result = await c.call_tool("plan_task", {"task": "anything"})
    assert not result.is_error, text_of(result)
    assert len(backend.seen) == 1  # a size hint is a hint: capped, not worth a top-tier repair turn
    plan = Plan.model_validate(result.structured_content)
    assert plan.subtasks[0].expected_output_tokens == settings().max_output_tokens


async def test_planner_ids_that_are_not_slugs_become_slugs_with_their_dependencies_renamed_alike() -> None:
    draft = {
        "subtasks": [
            {"id": "Research SQLite", "role": "researcher", "instructions": "x", "depends_on": []},
            {"id": "Write_Up!", "role": "writer", "instructions": "y", "depends_on": ["Research SQLite"]},
        ],
    }
    backend = ScriptedBackend(lambda _: draft)
    async with client(backend) as c:
        result = await c.call_tool("plan_task", {"task": "anything"})
    assert not result.is_error, text_of(result)
    assert len(backend.seen) == 1
    plan = Plan.model_validate(result.structured_content)
    ids = [(s.id, s.depends_on) for s in plan.subtasks]
    assert ids == [("research-sqlite", []), ("write_up-", ["research-sqlite"])]


async def test_planner_ids_that_would_become_one_slug_get_a_repair_turn() -> None:
    twins = [{"id": i, "role": "writer", "instructions": "x", "depends_on": []} for i in ("Step 1", "step-1")]
    fixed = [{"id": i, "role": "writer", "instructions": "x", "depends_on": []} for i in ("step-1", "step-2")]
    drafts = iter([{"subtasks": twins}, {"subtasks": fixed}])
    backend = ScriptedBackend(lambda _: next(drafts))
    async with client(backend) as c:
        result = await c.call_tool("plan_task", {"task": "anything"})
    assert not result.is_error, text_of(result)
    assert len(backend.seen) == 2
    assert "subtasks.0.id" in backend.seen[1].messages[-1].content  # left as written, so the repair names it


async def test_a_plan_with_more_subtasks_than_asked_for_gets_a_repair_turn_that_counts_them() -> None:
    def draft(*ids: str) -> JsonObject:
        steps = [{"id": i, "role": "writer", "instructions": f"do {i}", "depends_on": []} for i in ids]
        return {"subtasks": steps}

    drafts = iter([draft("a", "b", "c"), draft("a", "b")])
    backend = ScriptedBackend(lambda _: next(drafts))
    async with client(backend) as c:
        result = await c.call_tool("plan_task", {"task": "anything", "max_subtasks": 2})
    assert not result.is_error, text_of(result)
    assert "at most 2 subtasks" in backend.seen[0].system  # said once, in the brief
    assert "the plan has 3 subtasks, more than the maximum of 2" in backend.seen[1].messages[-1].content


async def test_run_subagent_returns_the_roles_schema_valid_output_with_usage() -> None:
    backend = ScriptedBackend()
    async with client(backend) as c:
        result = await c.call_tool("run_subagent", {"role": "writer", "instructions": "Write a haiku about DAGs"})
    assert not result.is_error
    out = SubagentResult.model_validate(result.structured_content)
    assert out.status == "succeeded"
    assert set(out.output or {}) == {"summary", "text"}
    assert out.usage.input_tokens > 0
    assert out.cost_usd > 0
    assert out.model == settings().subagent_model
    assert "Write a haiku about DAGs" in backend.seen[0].messages[0].content


async def test_run_subagent_honours_a_custom_output_schema_and_model() -> None:
    schema: JsonObject = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    backend = ScriptedBackend()
    async with client(backend) as c:
        result = await c.call_tool(
            "run_subagent",
            {
                "role": "analyst",
                "instructions": "count",
                "output_schema": schema,
                "model": "claude-sonnet-5-5",
            },
        )
    assert SubagentResult.model_validate(result.structured_content).output == {"n": 1}
    assert backend.seen[0].output_schema == schema
    assert backend.seen[0].model == "claude-sonnet-5-5"


async def test_a_failed_subagent_is_an_error_result_that_still_carries_usage_and_reason() -> None:
    def refuse(_: CompletionRequest) -> JsonObject:
        raise ModelRequestError("Anthropic API rejected the request (400 invalid_request_error): bad", attempts=1)

    async with client(ScriptedBackend(refuse)) as c:
        result = await c.call_tool("run_subagent", {"role": "writer", "instructions": "x"})
    assert result.is_error
    out = SubagentResult.model_validate(result.structured_content)
    assert (out.status, out.attempts) == ("failed", 1)
    assert "400 invalid_request_error" in (out.error or "")
    assert "FAILED" in text_of(result)


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        ("plan_task", {"task": "   "}, "task is empty"),
        ("plan_task", {"task": "x", "max_subtasks": 99}, "max_subtasks must be between 1 and 12"),
        ("plan_task", {"task": "x", "roles": ["wizard"]}, "unknown role 'wizard'; available roles: analyst"),
        ("run_subagent", {"role": "wizard", "instructions": "x"}, "unknown role 'wizard'"),
        ("run_subagent", {"role": "writer", "instructions": ""}, "instructions is empty"),
        (
            "run_subagent",
            {"role": "writer", "instructions": "x", "output_schema": {"type": "array"}},
            '"type": "object"',
        ),
    ],
)
async def test_bad_input_is_a_tool_error_a_person_can_act_on_and_costs_nothing(
    tool: str, arguments: JsonObject, message: str
) -> None:
    backend = ScriptedBackend()
    async with client(backend) as c:
        result = await c.call_tool(tool, arguments)
        assert result.is_error
        assert message in text_of(result)
        assert backend.seen == []
        follow_up = await c.call_tool("run_subagent", {"role": "writer", "instructions": "still serving?"})
    assert not follow_up.is_error


async def test_without_a_key_the_server_starts_lists_tools_and_says_what_to_set() -> None:
    async with Client(create_server(settings())) as c:
        assert len((await c.list_tools()).tools) >= 2
        result = await c.call_tool("run_subagent", {"role": "writer", "instructions": "x"})
    assert result.is_error
    assert "ANTHROPIC_API_KEY is not set" in text_of(result)


async def test_the_delegate_prompt_walks_the_host_through_plan_execute_synthesize() -> None:
    async with client(ScriptedBackend()) as c:
        prompts = (await c.list_prompts()).prompts
        assert [p.name for p in prompts] == ["delegate"]
        result = await c.get_prompt("delegate", {"task": "Review our API design", "max_cost_usd": "0.50"})
    text = result.messages[0].content
    assert text.type == "text"
    assert "Review our API design" in text.text
    assert text.text.index("plan_task") < text.text.index("execute_plan") < text.text.index("synthesize")
    assert "max_cost_usd=0.50" in text.text


async def test_every_tools_arguments_are_pinned() -> None:
    """A change to any tool's arguments shows up here as a reviewable diff (--inline-snapshot=fix)."""
    async with client(ScriptedBackend()) as c:
        tools = (await c.list_tools()).tools
    shapes = {
        t.name: {"args": sorted(t.input_schema["properties"]), "required": t.input_schema.get("required", [])}
        for t in tools
    }
    assert shapes == snapshot(
        {
            "plan_task": {"args": ["max_subtasks", "roles", "task"], "required": ["task"]},
            "run_subagent": {
                "args": ["context", "instructions", "model", "output_schema", "role"],
                "required": ["role", "instructions"],
            },
            "execute_plan": {
                "args": [
                    "batch",
                    "max_concurrency",
                    "max_cost_usd",
                    "max_total_tokens",
                    "plan",
                    "plan_id",
                    "timeout_s",
                    "wait_s",
                ],
                "required": [],
            },
            "synthesize": {"args": ["force", "results", "run_id", "task"], "required": []},
            "orchestrate": {
                "args": [
                    "batch",
                    "max_concurrency",
                    "max_cost_usd",
                    "max_subtasks",
                    "max_total_tokens",
                    "task",
                    "wait_s",
                ],
                "required": ["task"],
            },
            "wait_run": {"args": ["run_id", "wait_s"], "required": ["run_id"]},
            "cancel_run": {"args": ["run_id"], "required": ["run_id"]},
            "list_runs": {"args": ["limit"], "required": []},
            "resume_run": {"args": ["max_cost_usd", "max_total_tokens", "run_id", "wait_s"], "required": ["run_id"]},
            "list_roles": {"args": [], "required": []},
        }
    )


@pytest.mark.parametrize("mode", ["auto", "legacy"])
@pytest.mark.parametrize(
    ("tool", "arguments", "where"),
    [
        ("run_subagent", {"role": "writer", "instructions": "odd \udcff"}, "instructions"),
        (
            "run_subagent",
            {"role": "writer", "instructions": "x", "output_schema": {"type": "object", "description": "\ud800"}},
            "output_schema.description",
        ),
        ("plan_task", {"task": "x", "roles": ["writer", "\ud83d"]}, "roles[1]"),
        ("wait_run", {"run_id": "\udfff", "wait_s": 0}, "run_id"),
        (
            "execute_plan",
            {
                "plan": {
                    "plan_id": "p",
                    "task": "t",
                    "subtasks": [{"id": "a", "role": "writer", "instructions": "\ud800"}],
                }
            },
            "plan.subtasks[0].instructions",
        ),
    ],
)
async def test_a_lone_surrogate_in_an_argument_is_a_tool_error_naming_it_not_a_crash(
    mode: Literal["auto", "legacy"], tool: str, arguments: JsonObject, where: str
) -> None:
    """Only an in-process client can send one; it used to reach the store or a validator and end as a bare crash."""
    backend = ScriptedBackend()
    async with Client(create_server(settings(), backend), mode=mode) as c:
        result = await c.call_tool(tool, arguments)
        follow_up = await c.call_tool("list_runs", {})
    assert result.is_error
    assert text_of(result).startswith(f"{tool} was called with invalid arguments; fix them and call it again:")
    assert f"- {where}" in text_of(result)
    assert "a lone surrogate that is not valid Unicode text" in text_of(result)
    assert backend.seen == []
    assert not follow_up.is_error
