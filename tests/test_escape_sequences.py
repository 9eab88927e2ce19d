"""Escape sequences in what models, agent files and callers write reach no terminal, host or log as they are.

Every string of the replies below carries a new window title (OSC 0), a cleared screen (CSI 2J), a clipboard
write (OSC 52), a disguised link (OSC 8), a carriage return that overwrites its line, and the 8-bit (C1) forms
of CSI and OSC. Each surface must show them (``\\x1b``), not send them, while the stored and structured data
keep them exactly.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client
from pydantic import SecretStr

from subagent_mcp.backends.scripted import sample_for_schema
from subagent_mcp.contracts import JsonObject
from subagent_mcp.demo import demo_plan_draft
from subagent_mcp.mcp_server import create_server
from subagent_mcp.prompts import SUBTASK_HEADING
from subagent_mcp.settings import Settings
from subagent_mcp.testing import FakeReply, FakeRequest, json_reply, refusal_reply, serve_fake_anthropic
from subagent_mcp.testing.results import text_of

SCRIPT = Path(sys.executable).with_name("subagent-mcp")
KEY = "sk-ant-test-escapes-0001"
EVIL = (
    "\x1b]0;PWNED-TITLE\x07\x1b[2J\x1b]52;c;cm0gLXJmIH4K\x07\x1b]8;;http://evil.example/\x07click\x1b]8;;\x07"
    "\r\x1b[Kfake line \x9b31mred\x9d0;C1-TITLE\x9c"
)
SHOWN = "\\x1b]0;PWNED-TITLE\\x07"
"""How the first sequence of ``EVIL`` reads once shown: the text is there, the escape is not."""
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""A control character a terminal would obey (tab and newline are text)."""


def raw_controls(text: str) -> list[str]:
    return RAW.findall(text)


def evil_reply(request: FakeRequest) -> FakeReply:
    """The planner's plan with ``EVIL`` in every instruction; research-b refuses with it; the rest answer with it."""
    if "Plan the user's task" in request.system_text:
        draft = demo_plan_draft()
        for s in draft["subtasks"]:
            s["instructions"] = f"{EVIL} {s['instructions']}"
        return json_reply(draft)
    if f"{SUBTASK_HEADING} (" in request.first_user_text and request.subtask_id == "research-b":
        return refusal_reply(EVIL)
    sample = sample_for_schema(request.schema or {})
    return json_reply({k: EVIL if isinstance(v, str) else v for k, v in sample.items()})


def clean_env(db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "SUBAGENT_MCP_"))}
    return env | {"SUBAGENT_MCP_DB_PATH": str(db), "ANTHROPIC_API_KEY": KEY}


@pytest.mark.subprocess
@pytest.mark.anyio
async def test_run_runs_and_show_print_a_reply_s_escape_sequences_as_text(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "runs.db")
    async with serve_fake_anthropic(evil_reply, api_key=KEY) as fake:
        env["ANTHROPIC_BASE_URL"] = fake.base_url
        run = await anyio.run_process([str(SCRIPT), "run", f"Pick a database {EVIL}"], env=env, check=False)
    out, err = run.stdout.decode(), run.stderr.decode()
    assert run.returncode == 1, err  # research-b refused, so the run did not succeed
    assert raw_controls(out) == []
    assert raw_controls(err) == []
    assert SHOWN in out  # the answer and the output summaries, shown
    assert err.count(SHOWN) >= 5  # the plan's instructions, and the refusal on the progress line
    assert not any(line.startswith("fake line") for line in out.splitlines() + err.splitlines())

    listed = (await anyio.run_process([str(SCRIPT), "runs"], env=env)).stdout.decode()
    (line,) = listed.splitlines()  # the task's escapes forge no line
    assert raw_controls(listed) == []
    assert SHOWN in line
    run_id = line.split()[0]
    shown = (await anyio.run_process([str(SCRIPT), "show", run_id], env=env)).stdout.decode()
    assert raw_controls(shown) == []
    assert shown.startswith(f"Task: Pick a database {SHOWN}")


@pytest.mark.anyio
async def test_orchestrate_s_text_and_progress_show_the_escapes_and_its_structured_content_keeps_them() -> None:
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    async with serve_fake_anthropic(evil_reply, api_key=KEY) as fake:
        settings = Settings(
            anthropic_api_key=SecretStr(KEY), anthropic_base_url=fake.base_url, db_path=":memory:", agent_dirs=[]
        )
        async with Client(create_server(settings)) as client:
            task = {"task": f"Pick a database {EVIL}", "wait_s": 30}
            result = await client.call_tool("orchestrate", task, progress_callback=on_progress)
    text = text_of(result)
    assert raw_controls(text) == []
    assert SHOWN in text
    structured: JsonObject = result.structured_content or {}
    assert structured["synthesis"]["answer"] == EVIL  # the data itself is not touched
    assert structured["plan"]["task"] == f"Pick a database {EVIL}"
    assert messages
    assert all(raw_controls(m) == [] for m in messages)
    assert any(SHOWN in m for m in messages)  # the refusal, quoted in research-b's progress step


@pytest.mark.anyio
async def test_a_tool_error_quoting_a_caller_s_name_shows_its_escapes() -> None:
    settings = Settings(anthropic_api_key=SecretStr(KEY), db_path=":memory:", agent_dirs=[])
    async with Client(create_server(settings)) as client:
        result = await client.call_tool("list_runs", {f"limit{EVIL}": 1})
    assert result.is_error
    assert raw_controls(text_of(result)) == []
    assert f"- limit{SHOWN}" in text_of(result)


def hostile_agents(root: Path) -> Path:
    """An agent file whose description holds ``EVIL``, and one whose file name holds escapes and a newline."""
    folder = root / "agents"
    folder.mkdir()
    escaped = EVIL.encode("unicode_escape").decode().replace('"', '\\"')
    (folder / "ansi.md").write_text(f'---\nname: ansi\ndescription: "{escaped} innocent"\n---\nA role.\n')
    forged = folder / "esc\x1b]0;PWNED\x07\x1b[2J\nFAKE LOG LINE.md"
    forged.write_text("---\nname: bad name\ndescription: d\n---\nx\n")  # skipped: not a role name
    return folder


@pytest.mark.anyio
async def test_list_roles_shows_a_description_s_escapes_and_keeps_them_in_its_structured_content(
    tmp_path: Path,
) -> None:
    agents = hostile_agents(tmp_path)
    settings = Settings(anthropic_api_key=SecretStr(KEY), db_path=":memory:", agent_dirs=[str(agents)])
    async with Client(create_server(settings)) as client:
        result = await client.call_tool("list_roles", {})
    text = text_of(result)
    assert raw_controls(text) == []
    assert SHOWN in text
    assert not any(line.startswith("FAKE LOG LINE") for line in text.splitlines())
    roles = {r["name"]: r for r in (result.structured_content or {})["roles"]}
    assert roles["ansi"]["description"] == f"{EVIL} innocent"


@pytest.mark.subprocess
def test_the_roles_command_and_its_log_show_a_file_name_s_escapes_and_newline_on_one_line(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "runs.db") | {"SUBAGENT_MCP_AGENT_DIRS": str(hostile_agents(tmp_path))}
    out = subprocess.run([str(SCRIPT), "roles"], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert out.returncode == 1  # a file was skipped
    assert raw_controls(out.stdout) == []
    assert raw_controls(out.stderr) == []
    assert SHOWN in out.stdout
    assert "esc\\x1b]0;PWNED\\x07\\x1b[2J\\x0aFAKE LOG LINE.md" in out.stderr  # the text log: one line per record
    for stream in (out.stdout, out.stderr):
        assert not any(line.startswith("FAKE LOG LINE") for line in stream.splitlines())
    as_json = subprocess.run([str(SCRIPT), "roles", "--json"], capture_output=True, text=True, env=env, timeout=60)
    assert raw_controls(as_json.stdout) == []
    roles = {r["name"]: r for r in json.loads(as_json.stdout)["roles"]}
    assert roles["ansi"]["description"] == f"{EVIL} innocent"  # the exact text, escaped as JSON


@pytest.mark.subprocess
@pytest.mark.anyio
async def test_a_task_that_is_not_utf_8_is_refused_in_one_line_before_the_planner_is_called(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "runs.db")
    async with serve_fake_anthropic(evil_reply, api_key=KEY) as fake:
        env["ANTHROPIC_BASE_URL"] = fake.base_url
        done = await anyio.run_process([os.fsencode(SCRIPT), b"run", b"caf\xe9 task"], env=env, check=False)
        shown = await anyio.run_process([os.fsencode(SCRIPT), b"show", b"run-\xff"], env=env, check=False)
    assert fake.message_requests == []
    assert (done.returncode, shown.returncode) == (2, 2)
    assert done.stdout == shown.stdout == b""
    assert done.stderr.decode().splitlines() == [
        "subagent-mcp: the task holds U+DCE9, a lone surrogate that is not valid Unicode text; send it as UTF-8 text "
        "(some of its bytes are not UTF-8: is the terminal set to another encoding?)"
    ]
    assert shown.stderr.decode().startswith("subagent-mcp: the run id holds U+DCFF, a lone surrogate")
