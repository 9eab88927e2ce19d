"""A NUL character (U+0000) from outside, on SQLite and PostgreSQL alike (PostgreSQL text cannot hold one).

A caller's NUL is refused before any token is spent, with a tool error naming the field; a model's NUL
(a reply, an API error body) becomes U+FFFD where replies are read, so both stores save the same thing.
Through real MCP clients, the real SDK on the fake API and both real databases.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from pydantic import SecretStr

from subagent_mcp.backends.scripted import sample_for_schema
from subagent_mcp.contracts import JsonObject, OrchestrateResult, Plan, RunReport
from subagent_mcp.demo import demo_plan_draft
from subagent_mcp.mcp_server import create_server
from subagent_mcp.role_catalog import RoleCatalog
from subagent_mcp.settings import Settings
from subagent_mcp.testing import (
    FakeAnthropic,
    FakeReply,
    FakeRequest,
    error_reply,
    hang_reply,
    json_reply,
    serve_fake_anthropic,
    text_reply,
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
    batches: dict[str, Any] = {"batch_poll_s": 0.002, "batch_gather_s": 600}  # a gather that hangs hits fail_after
    return Settings(
        anthropic_api_key=SecretStr(KEY), anthropic_base_url=fake.base_url, retry_max_wait_s=0, **where, **batches
    )


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
    (
        "synthesize",
        {"results": [{"task_id": "a", "role": "writer", "status": "succeeded", "output": {"text": f"x{NUL}"}}]},
        "results[0].output.text:",
    ),
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


def nul_everywhere(request: FakeRequest) -> FakeReply:
    """The planner's plan, each subtask's output and the synthesis, with a NUL in every string the schemas allow."""
    if "Plan the user's task" in request.system_text:
        draft = demo_plan_draft()
        for step in draft["subtasks"]:
            step["instructions"] = poisoned(step["instructions"])
        return json_reply(draft)
    return json_reply(poisoned(sample_for_schema(request.schema or {})))


async def test_nul_in_the_planner_subtask_and_synthesis_replies_is_stored_and_shown_as_a_replacement_character(
    db_location: str,
) -> None:
    with anyio.fail_after(20):
        async with (
            serve_fake_anthropic(nul_everywhere, api_key=KEY) as fake,
            Client(create_server(settings_for(fake, db_location))) as c,
        ):
            done = await c.call_tool("orchestrate", {"task": "Compare two databases"})
            out = OrchestrateResult.model_validate(done.structured_content)
            stored = await c.read_resource(f"subagent://runs/{out.report.run_id}")
            stored_plan = await c.read_resource(f"subagent://plans/{out.plan.plan_id}")
            runs = await c.call_tool("list_runs", {})

    assert not done.is_error, text_of(done)
    assert out.report.status == "succeeded"
    assert (
        out.plan.subtasks[0].instructions == f"[{REPLACED}demo output: no model was called] Research the first angle."
    )
    assert out.synthesis is not None
    assert out.synthesis.answer == f"a{REPLACED}nswer (scripted)"
    first = out.report.results[0].output
    assert first is not None
    assert first["summary"] == f"s{REPLACED}ummary (scripted)"
    texts = [text_of(done), json.dumps(done.structured_content), text_of(runs)]
    texts += [getattr(part, "text", "") for part in [*stored.contents, *stored_plan.contents]]
    assert all(holds_no_nul(text) for text in texts)
    assert Plan.model_validate_json(getattr(stored_plan.contents[0], "text", "")).subtasks == out.plan.subtasks


@pytest.mark.parametrize("batch", [False, True], ids=["live", "batch"])
async def test_a_reply_with_nul_in_a_key_and_an_api_error_with_nul_leave_a_stored_partial_run(
    db_location: str, batch: bool
) -> None:
    plan: JsonObject = {
        "plan_id": "p-nul-replies",
        "task": "Write a short report",
        "subtasks": [
            {"id": "keyed", "role": "writer", "instructions": "Any object", "output_schema": {"type": "object"}},
            {"id": "refused", "role": "writer", "instructions": "Be refused"},
        ],
    }

    def reply(request: FakeRequest) -> FakeReply:
        if request.subtask_id == "keyed":
            return text_reply('{"na\\u0000me": "val\\u0000ue"}')
        return error_reply(400, f"prompt holds{NUL}something we refuse")

    with anyio.fail_after(20):
        async with (
            serve_fake_anthropic(reply, api_key=KEY) as fake,
            Client(create_server(settings_for(fake, db_location))) as c,
        ):
            done = await c.call_tool("execute_plan", {"plan": plan, "batch": batch})
            report = RunReport.model_validate(done.structured_content)
            stored = await c.read_resource(f"subagent://runs/{report.run_id}")

    results = {r.task_id: r for r in report.results}
    assert report.status == "partial", text_of(done)
    assert results["keyed"].output == {f"na{REPLACED}me": f"val{REPLACED}ue"}
    assert f"prompt holds{REPLACED}something we refuse" in (results["refused"].error or "")
    assert all(holds_no_nul(text) for text in [text_of(done), *(getattr(p, "text", "") for p in stored.contents)])
    assert json.loads(getattr(stored.contents[0], "text", ""))["status"] == "partial"


async def test_a_planner_failing_with_nul_in_its_error_is_the_same_tool_error_on_both_stores(db_location: str) -> None:
    replies = iter([text_reply("not JSON"), error_reply(400, f"bad{NUL}request")])  # billed, then an error body

    with anyio.fail_after(20):
        async with (
            serve_fake_anthropic(lambda _: next(replies), api_key=KEY) as fake,
            Client(create_server(settings_for(fake, db_location))) as c,
        ):
            failed = await c.call_tool("plan_task", {"task": "Pick a database"})
            runs = await c.call_tool("list_runs", {})

    assert failed.is_error
    assert f"bad{REPLACED}request" in text_of(failed)
    assert "The planner's calls were billed" in text_of(failed)  # its spend was kept on record
    assert holds_no_nul(text_of(failed))
    assert not runs.is_error


async def test_a_reply_naming_its_model_with_a_nul_is_billed_and_recorded_when_its_task_is_cut_short(
    db_location: str,
) -> None:
    """A call whose task never ends is logged with the model its reply names; PostgreSQL refused that name."""
    repairing = anyio.Event()

    def reply(request: FakeRequest) -> FakeReply:
        if request.index == 0:  # billed, then sent back for repair
            return replace(text_reply("not JSON"), model=f"claude-haiku-5-5{NUL}")
        repairing.set()
        return hang_reply()

    with anyio.fail_after(20):
        async with (
            serve_fake_anthropic(reply, api_key=KEY) as fake,
            Client(create_server(settings_for(fake, db_location))) as c,
        ):
            started = await c.call_tool("execute_plan", {"plan": plan_with(), "wait_s": 0})
            run_id = str((started.structured_content or {})["run_id"])
            await repairing.wait()
            cancelled = await c.call_tool("cancel_run", {"run_id": run_id})
            stored = await c.read_resource(f"subagent://runs/{run_id}")
            runs = await c.call_tool("list_runs", {})

    assert not cancelled.is_error, text_of(cancelled)
    record = json.loads(getattr(stored.contents[0], "text", ""))
    assert record["status"] == "cancelled"
    assert record["usage"]["input_tokens"] == fake.billed_usage.input_tokens  # the cut-short call is on record
    assert not runs.is_error, text_of(runs)


async def test_an_agent_file_holding_a_nul_is_skipped_with_its_problem_and_never_offered(tmp_path: Path) -> None:
    """A NUL byte means UTF-16 or binary; a YAML ``\\0`` escape puts one in a description: neither becomes a role."""
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "raw.md").write_bytes(b"---\nname: raw\ndescription: Writes.\n---\nYou write.\x00\n")
    (agents / "escaped.md").write_text('---\nname: escaped\ndescription: "Writes\\0."\n---\nYou write.\n')
    (agents / "utf16.md").write_bytes("---\nname: wide\ndescription: Writes.\n---\nYou write.\n".encode("utf-16-le"))

    async with serve_fake_anthropic(api_key=KEY) as fake:
        settings = settings_for(fake, ":memory:").model_copy(update={"agent_dirs": [str(agents)]})
        async with Client(create_server(settings)) as c:
            listed = await c.call_tool("list_roles", {})

    catalog = RoleCatalog.model_validate(listed.structured_content)
    assert [(Path(s.path).name, s.problem) for s in catalog.skipped] == [
        ("escaped.md", "its front matter holds a NUL character (U+0000); remove it"),
        ("raw.md", "holds a NUL character (U+0000) at byte 49; save it as UTF-8 text without one"),
        ("utf16.md", "holds a NUL character (U+0000) at byte 1; save it as UTF-8 text without one"),
    ]
    assert {"raw", "escaped", "wide"}.isdisjoint(role.name for role in catalog.roles)


async def test_a_batch_the_api_names_with_a_nul_fails_its_subtasks_the_same_way_on_both_stores(
    db_location: str,
) -> None:
    with anyio.fail_after(20):
        async with (
            serve_fake_anthropic(api_key=KEY) as fake,
            Client(create_server(settings_for(fake, db_location))) as c,
        ):
            fake.batches.next_ids.append(f"msgbatch{NUL}01")
            done = await c.call_tool("execute_plan", {"plan": plan_with(), "batch": True})
            report = RunReport.model_validate(done.structured_content)
            runs = await c.call_tool("list_runs", {})

    (result,) = report.results
    assert (report.status, result.status) == ("failed", "failed")
    assert (result.error or "").startswith(
        "the Message Batches API named its new batch 'msgbatch\\x0001', which is not a batch id"
    ), result.error
    assert holds_no_nul(text_of(done))
    assert not runs.is_error
