"""File roles end to end: the planner is offered them, a plan runs them against the fake API, and they are listed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client
from mcp.types import TextResourceContents
from pydantic import SecretStr

from subagent_mcp.agents import MAX_FILE_ROLES, MAX_ROLE_TOOLS
from subagent_mcp.contracts import JsonObject, Plan, RunReport
from subagent_mcp.mcp_server import create_server
from subagent_mcp.prompts import ROLE_BLURB_CHARS
from subagent_mcp.role_catalog import LISTED_DESCRIPTION_CHARS, PLANNER_UNUSABLE_SHOWN, RoleCatalog
from subagent_mcp.roles import BUILTIN_ROLES
from subagent_mcp.settings import Settings
from subagent_mcp.testing import FakeAnthropic, json_reply, serve_fake_anthropic
from subagent_mcp.testing.results import text_of

pytestmark = pytest.mark.anyio

KEY = "sk-ant-test-agent-files-42"
PROMPT = "You are a meticulous code reviewer. Point at the exact lines."
REVIEWER = f"""---
name: code-reviewer
description: Reviews diffs for bugs and risky changes.
tools: Read, Grep, WebSearch
model: claude-opus-4-8
---
{PROMPT}
"""


@pytest.fixture
def agents(tmp_path: Path) -> Path:
    folder = tmp_path / "agents"
    folder.mkdir()
    (folder / "code-reviewer.md").write_text(REVIEWER, encoding="utf-8")
    (folder / "broken.md").write_text("---\nname: broken\n---\nno description\n", encoding="utf-8")
    return folder


def settings_for(fake: FakeAnthropic, agents: Path) -> Settings:
    return Settings(
        anthropic_api_key=SecretStr(KEY),
        anthropic_base_url=fake.base_url,
        retry_max_wait_s=0,
        db_path=":memory:",
        agent_dirs=[str(agents)],
    )


def plan_with(role: str) -> JsonObject:
    return {
        "plan_id": "p-agents",
        "task": "Review the patch",
        "subtasks": [{"id": "review", "role": role, "instructions": "Review the diff.", "depends_on": []}],
    }


async def test_a_plan_step_with_a_file_role_sends_the_files_prompt_model_and_tools(agents: Path) -> None:
    async with serve_fake_anthropic(api_key=KEY) as fake:
        fake.enqueue(json_reply({"summary": "two bugs", "result": "line 3 and line 9"}))
        async with Client(create_server(settings_for(fake, agents))) as c:
            result = await c.call_tool("execute_plan", {"plan": plan_with("code-reviewer")})
    assert not result.is_error, text_of(result)
    report = RunReport.model_validate(result.structured_content)
    assert report.status == "succeeded"
    (request,) = fake.message_requests
    assert request.model == "claude-opus-4-8"
    assert request.system_text.startswith(PROMPT)
    assert request.schema is not None
    assert set(request.schema["properties"]) == {"summary", "result"}
    tools = request.body.get("tools") or []
    assert [t["name"] for t in tools] == ["web_search"]  # WebSearch from the file; Read and Grep are not sent


async def test_the_planner_is_offered_the_file_role_with_its_description_and_tools(agents: Path) -> None:
    async with serve_fake_anthropic(api_key=KEY) as fake:
        fake.enqueue(json_reply({"subtasks": plan_with("code-reviewer")["subtasks"]}))
        async with Client(create_server(settings_for(fake, agents))) as c:
            result = await c.call_tool("plan_task", {"task": "Review the patch"})
    assert not result.is_error, text_of(result)
    assert Plan.model_validate(result.structured_content).subtasks[0].role == "code-reviewer"
    (request,) = fake.message_requests
    assert (
        "- code-reviewer: Reviews diffs for bugs and risky changes. "
        "Tools: web_search. Tools it lists but cannot use here: Read, Grep." in request.system_text
    )
    assert "- researcher: " in request.system_text
    assert request.schema is not None
    assert "code-reviewer" in request.schema["properties"]["subtasks"]["items"]["properties"]["role"]["enum"]


async def test_a_role_listing_thousands_of_tools_costs_the_planner_one_short_line(agents: Path) -> None:
    tools = ", ".join(["WebSearch", *(f"T{i:05d}" * 4 for i in range(9000))])
    (agents / "many-tools.md").write_text(
        f"---\nname: many-tools\ndescription: Lists every tool.\ntools: {tools}\n---\nYou do it all.\n",
        encoding="utf-8",
    )
    async with serve_fake_anthropic(api_key=KEY) as fake:
        fake.enqueue(json_reply({"subtasks": plan_with("many-tools")["subtasks"]}))
        async with Client(create_server(settings_for(fake, agents))) as c:
            planned = await c.call_tool("plan_task", {"task": "Do it all"})
            listed = await c.call_tool("list_roles", {})
    assert not planned.is_error, text_of(planned)
    (request,) = fake.message_requests
    (line,) = [line for line in request.system_text.splitlines() if line.startswith("- many-tools:")]
    shown = ", ".join(f"T{i:05d}" * 4 for i in range(PLANNER_UNUSABLE_SHOWN))
    more = MAX_ROLE_TOOLS - 1 - PLANNER_UNUSABLE_SHOWN
    assert line == (
        "- many-tools: Lists every tool. Tools: web_search. "
        f"Tools it lists but cannot use here: {shown} and {more} more."
    )
    assert len(request.system_text) < 10_000
    catalog = RoleCatalog.model_validate(listed.structured_content)
    role = {r.name: r for r in catalog.roles}["many-tools"]
    assert len(role.tools) == MAX_ROLE_TOOLS
    assert f"lists 9,001 tools; the first {MAX_ROLE_TOOLS} are kept" in " ".join(role.notes)
    assert len(text_of(listed)) < 20_000


async def test_the_planner_is_offered_at_most_the_capped_number_of_file_roles(agents: Path) -> None:
    for i in range(MAX_FILE_ROLES + 5):
        (agents / f"r{i:04d}.md").write_text(
            f"---\nname: r{i:04d}\ndescription: {'word ' * 60}\n---\n{'x' * 200}\n", encoding="utf-8"
        )
    async with serve_fake_anthropic(api_key=KEY) as fake:
        fake.enqueue(json_reply({"subtasks": plan_with("r0000")["subtasks"]}))
        async with Client(create_server(settings_for(fake, agents))) as c:
            planned = await c.call_tool("plan_task", {"task": "Pick a role"})
            listed = await c.call_tool("list_roles", {})
    assert not planned.is_error, text_of(planned)
    (request,) = fake.message_requests
    assert request.schema is not None
    offered = request.schema["properties"]["subtasks"]["items"]["properties"]["role"]["enum"]
    assert len(offered) == len(BUILTIN_ROLES) + MAX_FILE_ROLES  # code-reviewer and the first r* files
    assert "code-reviewer" in offered
    assert f"r{MAX_FILE_ROLES - 2:04d}" in offered
    assert f"r{MAX_FILE_ROLES - 1:04d}" not in offered
    catalog = RoleCatalog.model_validate(listed.structured_content)
    assert [Path(s.path).name for s in catalog.skipped] == ["broken.md", agents.name]
    assert catalog.skipped[1].problem.startswith(f"6 agent files not read, from r{MAX_FILE_ROLES - 1:04d}.md on")


CLAUDE_CODE_STYLE = (  # as Claude Code's /agents writes it: one line, literal \\n, `user: "..."` that YAML refuses
    "---\n"
    "name: test-writer\n"
    r"description: Use this agent when code needs tests. Examples:\n\n<example>\nContext: The user added a parser."
    r'\nuser: "Write tests for it"\nassistant: "I will use the test-writer agent."\n<commentary>New code needs tests.'
    r'</commentary>\n</example>\n\n<example>\nContext: A bug was fixed.\nuser: "Add a regression test"\n</example>'
    "\ntools: Read, Write\n"
    "---\n"
    "You write tests.\n"
)


async def test_the_planner_reads_a_file_roles_description_without_its_examples_and_capped(agents: Path) -> None:
    (agents / "test-writer.md").write_text(CLAUDE_CODE_STYLE, encoding="utf-8")
    wordy = "Reviews prose. " + "It checks every sentence for clarity and tone. " * 20
    (agents / "prose.md").write_text(f"---\nname: prose\ndescription: {wordy}\n---\nYou review.\n", encoding="utf-8")
    async with serve_fake_anthropic(api_key=KEY) as fake:
        fake.enqueue(json_reply({"subtasks": plan_with("test-writer")["subtasks"]}))
        async with Client(create_server(settings_for(fake, agents))) as c:
            result = await c.call_tool("plan_task", {"task": "Test the parser"})
    assert not result.is_error, text_of(result)
    (request,) = fake.message_requests
    lines = {line.split(":", 1)[0]: line for line in request.system_text.splitlines() if line.startswith("- ")}
    assert lines["- test-writer"].startswith("- test-writer: Use this agent when code needs tests. Tools it lists")
    assert "<example>" not in request.system_text
    assert lines["- prose"].startswith("- prose: Reviews prose. It checks every sentence")
    assert lines["- prose"].endswith("…")
    assert len(lines["- prose"]) <= len("- prose: ") + ROLE_BLURB_CHARS


async def test_a_plan_naming_an_unknown_role_is_refused_before_any_call(agents: Path) -> None:
    async with serve_fake_anthropic(api_key=KEY) as fake, Client(create_server(settings_for(fake, agents))) as c:
        result = await c.call_tool("execute_plan", {"plan": plan_with("broken")})
    assert result.is_error
    assert "unknown roles in subtasks: review (role 'broken')" in text_of(result)
    assert "code-reviewer" in text_of(result)
    assert fake.requests == []


async def test_list_roles_and_the_roles_resource_show_sources_models_tools_and_skipped_files(agents: Path) -> None:
    async with serve_fake_anthropic(api_key=KEY) as fake, Client(create_server(settings_for(fake, agents))) as c:
        listed = await c.call_tool("list_roles", {})
        contents = (await c.read_resource("subagent://roles")).contents[0]
    assert isinstance(contents, TextResourceContents)
    catalog = RoleCatalog.model_validate(listed.structured_content)
    assert RoleCatalog.model_validate_json(contents.text) == catalog
    roles = {role.name: role for role in catalog.roles}
    reviewer = roles["code-reviewer"]
    assert (reviewer.source, reviewer.model) == (str(agents / "code-reviewer.md"), "claude-opus-4-8")
    assert {t.name: t.status for t in reviewer.tools} == {
        "Read": "not available here",
        "Grep": "not available here",
        "WebSearch": "available",
    }
    assert (roles["coder"].source, roles["coder"].model) == ("built-in", Settings().strong_subagent_model)
    assert [(Path(s.path).name, s.problem) for s in catalog.skipped] == [
        ("broken.md", "no description (the planner picks roles by it)")
    ]
    text = text_of(listed)
    assert "broken.md: no description" in text
    assert "tool WebSearch → web_search: available, at most 5 uses per call" in text
    assert fake.requests == []


@pytest.mark.subprocess
def test_the_roles_command_prints_the_same_catalog_and_fails_when_a_file_was_skipped(
    agents: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "SUBAGENT_MCP_"))}
    env["SUBAGENT_MCP_AGENT_DIRS"] = str(agents)
    script = Path(sys.executable).with_name("subagent-mcp")

    def roles(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script), "roles", *args], capture_output=True, text=True, timeout=60, env=env, check=False
        )

    text, as_json = roles(), roles("--json")
    assert (text.returncode, as_json.returncode) == (1, 1)
    catalog = RoleCatalog.model_validate(json.loads(as_json.stdout))
    assert "code-reviewer" in {r.name for r in catalog.roles}
    assert "- code-reviewer [claude-opus-4-8]" in text.stdout
    assert f"{agents / 'broken.md'}: no description" in text.stdout
    (agents / "broken.md").unlink()
    assert roles().returncode == 0


async def test_the_role_listing_shows_a_huge_description_capped_and_says_how_much_it_left_out(agents: Path) -> None:
    huge = "Reviews everything. " + "x" * 200_000
    (agents / "huge.md").write_text(f"---\nname: huge\ndescription: {huge}\n---\nYou review.\n", encoding="utf-8")
    async with serve_fake_anthropic(api_key=KEY) as fake, Client(create_server(settings_for(fake, agents))) as c:
        listed = await c.call_tool("list_roles", {})
        contents = (await c.read_resource("subagent://roles")).contents[0]
    assert isinstance(contents, TextResourceContents)
    assert len(contents.text) < 20_000
    shown = {r.name: r for r in RoleCatalog.model_validate(listed.structured_content).roles}["huge"].description
    left_out = len(huge) - LISTED_DESCRIPTION_CHARS
    assert shown == f"{huge[:LISTED_DESCRIPTION_CHARS]}… ({left_out:,} more characters not shown)"
    assert "- huge [" in text_of(listed)
    assert len(text_of(listed)) < 20_000
