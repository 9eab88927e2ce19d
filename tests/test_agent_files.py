"""Roles read from Claude Code agent files: what loads, what is skipped and why, and which file wins."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from subagent_mcp.agents import (
    FILE_ROLE_SCHEMA,
    LARGE_ROLE_LIST,
    MAX_FILE_ROLES,
    MAX_ROLE_TOOLS,
    MAX_TOOL_NAME_CHARS,
    load_roles,
)
from subagent_mcp.front_matter import MAX_AGENT_FILE_BYTES
from subagent_mcp.role_catalog import RoleCatalog, RoleInfo
from subagent_mcp.roles import BUILTIN_ROLES
from subagent_mcp.settings import Settings

REVIEWER = """---
name: code-reviewer
description: Reviews diffs for bugs and risky changes.
tools: Read, Grep, WebSearch
model: sonnet
color: purple
---
You are a meticulous code reviewer. Point at lines.
"""


def agent(folder: Path, filename: str, front: str, body: str = "You are a specialist.") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    path.write_text(f"---\n{front.strip()}\n---\n{body}\n", encoding="utf-8")
    return path


def settings(*dirs: Path, **overrides: object) -> Settings:
    return Settings.from_env({"SUBAGENT_MCP_AGENT_DIRS": os.pathsep.join(map(str, dirs))}, env_file=None, **overrides)


def by_name(catalog: RoleCatalog) -> dict[str, RoleInfo]:
    return {role.name: role for role in catalog.roles}


def problems(catalog: RoleCatalog) -> dict[str, str]:
    return {Path(s.path).name: s.problem for s in catalog.skipped}


def test_a_claude_code_agent_file_becomes_a_role_beside_the_built_ins(tmp_path: Path) -> None:
    folder = tmp_path / "agents"
    folder.mkdir()
    (folder / "code-reviewer.md").write_text(REVIEWER, encoding="utf-8")
    loaded = load_roles(settings(folder))
    role = loaded.roles["code-reviewer"]
    assert role.system_prompt == "You are a meticulous code reviewer. Point at lines."
    assert role.description == "Reviews diffs for bugs and risky changes."
    assert role.model == Settings().strong_subagent_model
    assert role.output_schema == FILE_ROLE_SCHEMA
    assert set(BUILTIN_ROLES) < set(loaded.roles)
    info = by_name(loaded.catalog)["code-reviewer"]
    assert info.source == str(folder / "code-reviewer.md")
    assert by_name(loaded.catalog)["writer"].source == "built-in"
    assert [(t.name, t.server_tool, t.status) for t in info.tools] == [
        ("Read", None, "not available here"),
        ("Grep", None, "not available here"),
        ("WebSearch", "web_search", "available"),
    ]
    assert loaded.catalog.skipped == []


def test_a_one_line_description_with_user_colon_examples_loads_as_claude_code_reads_it(tmp_path: Path) -> None:
    # YAML refuses `description: ... user: "..."` (a colon in a plain value); Claude Code writes and reads it
    description = r'Use when code changed. Examples:\n<example>user: "review this" assistant: "on it"</example>'
    agent(tmp_path, "cc.md", f"name: cc\ndescription: {description}\nmodel: sonnet\ntools: WebSearch")
    agent(tmp_path, "quoted.md", "name: quoted\ndescription: 'A: quoted value'\nextra: x: y")
    loaded = load_roles(settings(tmp_path))
    assert loaded.catalog.skipped == []
    assert loaded.roles["cc"].description == description
    assert loaded.roles["cc"].model == Settings().strong_subagent_model
    assert [t.name for t in by_name(loaded.catalog)["cc"].tools] == ["WebSearch"]
    assert loaded.roles["quoted"].description == "A: quoted value"


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("haiku", "claude-haiku-test"),
        ("sonnet", "claude-sonnet-test"),
        ("opus", "claude-opus-test"),
        ("inherit", "claude-haiku-test"),
        ("claude-opus-4-8", "claude-opus-4-8"),
    ],
)
def test_model_aliases_map_to_the_configured_models_and_ids_pass_through(
    tmp_path: Path, model: str, expected: str
) -> None:
    agent(tmp_path, "a.md", f"name: a\ndescription: d\nmodel: {model}")
    configured = settings(
        tmp_path,
        subagent_model="claude-haiku-test",
        strong_subagent_model="claude-sonnet-test",
        planner_model="claude-opus-test",
    )
    assert by_name(load_roles(configured).catalog)["a"].model == expected


def test_role_models_still_overrides_a_files_model(tmp_path: Path) -> None:
    agent(tmp_path, "a.md", "name: a\ndescription: d\nmodel: opus")
    info = by_name(load_roles(settings(tmp_path, role_models={"a": "claude-haiku-5-5"})).catalog)["a"]
    assert info.model == "claude-haiku-5-5"
    assert "SUBAGENT_MCP_ROLE_MODELS" in " ".join(info.notes)


def test_unusable_files_are_skipped_each_with_its_problem_and_the_rest_load(tmp_path: Path) -> None:
    agent(tmp_path, "good.md", "name: good\ndescription: fine")
    agent(tmp_path, "bad-yaml.md", "name: [unclosed\ndescription: x")
    agent(tmp_path, "no-name.md", "description: x")
    agent(tmp_path, "spaces.md", "name: Code Reviewer\ndescription: x")
    agent(tmp_path, "twin.md", "name: good\ndescription: the same name again")
    agent(tmp_path, "alias.md", "name: a2\ndescription: x\nmodel: gpt-4")
    agent(tmp_path, "empty-body.md", "name: e\ndescription: x", body="")
    agent(tmp_path, "schema.md", "name: s\ndescription: x\noutput_schema: {type: array}")
    agent(tmp_path, "python.md", "name: p\ndescription: !!python/object/apply:os.system [echo hi]")
    (tmp_path / "no-front.md").write_text("Just a prompt.\n", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not an agent file", encoding="utf-8")
    catalog = load_roles(settings(tmp_path)).catalog
    assert "good" in by_name(catalog)
    found = problems(catalog)
    assert set(found) == {
        "bad-yaml.md",
        "no-name.md",
        "spaces.md",
        "twin.md",
        "alias.md",
        "empty-body.md",
        "schema.md",
        "python.md",
        "no-front.md",
    }
    assert "not valid YAML at line 3" in found["bad-yaml.md"]  # the file's line, not the front matter's
    assert "no name" in found["no-name.md"]
    assert "e.g. 'code-reviewer'" in found["spaces.md"]
    assert "'good' is already used by good.md" in found["twin.md"]
    assert "unknown model 'gpt-4'" in found["alias.md"]
    assert "no system prompt" in found["empty-body.md"]
    assert '"type": "object"' in found["schema.md"]
    assert "python/object" in found["python.md"]
    assert "does not start with YAML front matter" in found["no-front.md"]


def test_the_project_folder_wins_over_the_user_folder_and_a_file_role_overrides_a_built_in(tmp_path: Path) -> None:
    project, user = tmp_path / "project", tmp_path / "user"
    agent(project, "helper.md", "name: helper\ndescription: from the project")
    agent(user, "helper.md", "name: helper\ndescription: from the user")
    agent(user, "writer.md", "name: writer\ndescription: our house style writer", body="Write like us.")
    loaded = load_roles(settings(project, user))
    assert loaded.roles["helper"].description == "from the project"
    assert problems(loaded.catalog) == {
        "helper.md": f"role 'helper' is already defined by {project / 'helper.md'}, whose folder comes first (it wins)"
    }
    assert loaded.roles["writer"].system_prompt == "Write like us."
    assert "overrides the built-in role 'writer'" in by_name(loaded.catalog)["writer"].notes


def test_by_default_the_working_folders_then_the_users_claude_agents_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    monkeypatch.setenv("HOME", str(home))
    work.mkdir()
    monkeypatch.chdir(work)
    agent(home / ".claude" / "agents", "mine.md", "name: mine\ndescription: user level")
    agent(work / ".claude" / "agents", "ours.md", "name: ours\ndescription: project level")
    catalog = load_roles(Settings.from_env({}, env_file=None)).catalog
    assert {"mine", "ours"} <= set(by_name(catalog))
    assert [d.path for d in catalog.agent_dirs] == [
        str(work / ".claude" / "agents"),
        str(home / ".claude" / "agents"),
    ]


def test_an_empty_agent_dirs_setting_loads_only_the_built_ins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    agent(tmp_path / ".claude" / "agents", "x.md", "name: x\ndescription: d")
    loaded = load_roles(Settings.from_env({"SUBAGENT_MCP_AGENT_DIRS": ""}, env_file=None))
    assert set(loaded.roles) == set(BUILTIN_ROLES)
    assert loaded.catalog.agent_dirs == []


def test_output_schemas_inline_or_from_a_file_beside_it_and_max_uses_are_kept(tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "verdict.json").write_text(
        '{"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}', encoding="utf-8"
    )
    agent(
        tmp_path,
        "inline.md",
        "name: inline\ndescription: d\ntools: [WebSearch, WebFetch]\nmax_uses: {WebSearch: 3, web_fetch: 2}\n"
        "output_schema:\n  type: object\n  properties: {n: {type: integer}}",
    )
    agent(tmp_path, "from-file.md", "name: from-file\ndescription: d\noutput_schema_file: schemas/verdict.json")
    agent(tmp_path, "escape.md", "name: escape\ndescription: d\noutput_schema_file: ../outside.json")
    loaded = load_roles(settings(tmp_path))
    assert loaded.roles["inline"].output_schema["properties"] == {"n": {"type": "integer"}}
    assert loaded.roles["inline"].max_uses == {"web_search": 3, "web_fetch": 2}
    assert [t.max_uses for t in by_name(loaded.catalog)["inline"].tools] == [3, 2]
    assert loaded.roles["from-file"].output_schema["required"] == ["ok"]
    assert "outside the agent file's folder" in problems(loaded.catalog)["escape.md"]


def test_max_uses_without_a_server_tool_is_refused(tmp_path: Path) -> None:
    agent(tmp_path, "a.md", "name: a\ndescription: d\ntools: Read\nmax_uses: 3")
    assert "lists no server tool" in problems(load_roles(settings(tmp_path)).catalog)["a.md"]


def test_oversized_binary_and_alias_bomb_files_are_refused_without_reading_them_whole(tmp_path: Path) -> None:
    agent(tmp_path, "big.md", "name: big\ndescription: d", body="x" * MAX_AGENT_FILE_BYTES)
    (tmp_path / "latin1.md").write_bytes(b"---\nname: l\ndescription: caf\xe9\n---\nbody\n")
    laughs = "\n".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 12))
    agent(tmp_path, "bomb.md", f"name: bomb\ndescription: d\nl0: &l0 lol\n{laughs}")
    os.mkfifo(tmp_path / "pipe.md")  # opening a FIFO would block the server's start for ever
    found = problems(load_roles(settings(tmp_path)).catalog)
    assert "the most read is 262,144" in found["big.md"]
    assert "not UTF-8" in found["latin1.md"]
    assert "expands to more than 1 MiB" in found["bomb.md"]
    assert found["pipe.md"] == "is not a regular file"


def test_a_role_keeps_its_first_tools_up_to_the_cap_and_says_what_it_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    long_name = "T" * (MAX_TOOL_NAME_CHARS + 1)
    names = ["WebSearch", long_name, "Read", "Read", *(f"Tool{i:05d}" for i in range(9000))]
    agent(tmp_path, "many.md", f"name: many\ndescription: d\ntools: {', '.join(names)}")
    with caplog.at_level(logging.WARNING, logger="subagent_mcp.agents"):
        loaded = load_roles(settings(tmp_path))
    role = loaded.roles["many"]
    assert role.tools == ("WebSearch", "Read", *(f"Tool{i:05d}" for i in range(MAX_ROLE_TOOLS - 2)))
    info = by_name(loaded.catalog)["many"]
    assert [t.name for t in info.tools] == list(role.tools)
    assert info.tools[0].status == "available"
    assert f"1 tool name longer than {MAX_TOOL_NAME_CHARS} characters skipped" in info.notes
    assert f"lists 9,002 tools; the first {MAX_ROLE_TOOLS} are kept, the other 8,952 skipped" in info.notes
    assert "the other 8,952 skipped" in caplog.text
    assert long_name not in caplog.text
    assert long_name not in " ".join(info.notes)


def test_past_the_cap_on_file_roles_the_remaining_files_are_skipped_unread_with_the_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for i in range(MAX_FILE_ROLES + 3):
        agent(first, f"r{i:04d}.md", f"name: r{i:04d}\ndescription: role {i}")
    agent(second, "later.md", "name: later\ndescription: from a later folder")
    with caplog.at_level(logging.WARNING, logger="subagent_mcp.agents"):
        loaded = load_roles(settings(first, second))
    file_roles = sorted(name for name, role in loaded.roles.items() if role.source)
    assert file_roles == [f"r{i:04d}" for i in range(MAX_FILE_ROLES)]
    limit = f"at most {MAX_FILE_ROLES} roles are read from agent files"
    assert [(s.path, s.problem.split(": ")[0]) for s in loaded.catalog.skipped] == [
        (str(first), f"3 agent files not read, from r{MAX_FILE_ROLES:04d}.md on"),
        (str(second), "1 agent file not read, from later.md on"),
    ]
    assert all(limit in s.problem for s in loaded.catalog.skipped)
    assert f"{len(loaded.roles)} roles" in caplog.text
    assert "every plan_task call" in caplog.text


def test_a_short_role_list_is_not_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for i in range(LARGE_ROLE_LIST - len(BUILTIN_ROLES)):
        agent(tmp_path, f"r{i}.md", f"name: r{i}\ndescription: role {i}")
    with caplog.at_level(logging.WARNING, logger="subagent_mcp.agents"):
        assert len(load_roles(settings(tmp_path)).roles) == LARGE_ROLE_LIST
    assert caplog.text == ""


def test_an_agent_file_linking_outside_its_folder_is_skipped_but_links_inside_it_load(tmp_path: Path) -> None:
    outside, real = tmp_path / "outside", tmp_path / "real-agents"
    agent(outside, "private.md", "name: private\ndescription: not in the agent folder", body="PRIVATE BODY")
    agent(real / "shared", "inner.md", "name: inner\ndescription: in a subfolder of the agent folder")
    (real / "escape.md").symlink_to(outside / "private.md")
    (real / "dotdot.md").symlink_to(Path("..") / "outside" / "private.md")
    (real / "inner.md").symlink_to(Path("shared") / "inner.md")
    linked_folder = tmp_path / "agents"  # ~/.claude/agents is often a link into a dotfiles repository
    linked_folder.symlink_to(real)
    loaded = load_roles(settings(linked_folder))
    assert "private" not in loaded.roles
    assert loaded.roles["inner"].description == "in a subfolder of the agent folder"
    found = problems(loaded.catalog)
    assert set(found) == {"escape.md", "dotdot.md"}
    assert found["escape.md"] == found["dotdot.md"]
    assert "links to a file outside its folder" in found["escape.md"]
