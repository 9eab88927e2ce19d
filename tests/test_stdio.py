"""The installed console script, started as a host starts it: a subprocess on stdio, a minimal env."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from subagent_mcp.backends.scripted import sample_for_schema
from subagent_mcp.contracts import OrchestrateResult, SubagentResult
from subagent_mcp.core.pricing import cost_usd
from subagent_mcp.demo import demo_plan_draft
from subagent_mcp.settings import Settings
from subagent_mcp.testing import FakeReply, FakeRequest, json_reply, serve_fake_anthropic, text_reply
from subagent_mcp.testing.results import text_of

pytestmark = [pytest.mark.anyio, pytest.mark.subprocess]

KEY = "sk-ant-test-SECRET-stdio-0042"
SCRIPT = Path(sys.executable).with_name("subagent-mcp")


def plan_then_samples(request: FakeRequest) -> FakeReply:
    """The planner gets the demo plan; every other call a schema-valid sample."""
    if "Plan the user's task" in request.system_text:
        return json_reply(demo_plan_draft())
    return json_reply(sample_for_schema(request.schema or {}))


async def test_the_console_script_serves_orchestrate_over_stdio_against_the_fake_api(tmp_path: Path) -> None:
    assert SCRIPT.exists(), f"console script not installed at {SCRIPT}; pip install -e . first"
    stderr_path = tmp_path / "server-stderr.log"
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with serve_fake_anthropic(plan_then_samples, api_key=KEY) as fake:
        env = {  # hosts pass a minimal environment: only what the config names
            "ANTHROPIC_API_KEY": KEY,
            "ANTHROPIC_BASE_URL": fake.base_url,
            "SUBAGENT_MCP_ALLOW_REMOTE_MODEL": "0",
            "SUBAGENT_MCP_LOG_LEVEL": "DEBUG",
            "SUBAGENT_MCP_DB_PATH": str(tmp_path / "runs.db"),
        }
        params = StdioServerParameters(command=str(SCRIPT), args=[], env=env, cwd=str(tmp_path))
        with stderr_path.open("w") as errlog:
            async with Client(stdio_client(params, errlog=errlog)) as client:
                with anyio.fail_after(30):
                    tools = {t.name for t in (await client.list_tools()).tools}
                    result = await client.call_tool(
                        "orchestrate", {"task": "Pick a database for a desktop app"}, progress_callback=on_progress
                    )
    assert tools >= {"plan_task", "run_subagent", "execute_plan", "synthesize", "orchestrate"}
    assert not result.is_error, text_of(result)
    out = OrchestrateResult.model_validate(result.structured_content)
    assert out.report.status == "succeeded"
    assert out.synthesis is not None
    assert out.synthesis.complete
    assert len(fake.message_requests) == len(out.plan.subtasks) + 2
    assert out.total.usage == fake.billed_usage  # the planner, every subtask and the synthesis: all of it
    prices = Settings().prices
    billed = sum(cost_usd(u, r.model, prices) for u, r in zip(fake.billed, fake.message_requests, strict=True))
    assert out.total.cost_usd == pytest.approx(billed)
    assert "In all (planning, every subtask attempt, synthesis)" in text_of(result)
    assert seen
    assert seen == sorted(seen)
    assert all(r.api_key == KEY for r in fake.message_requests)
    for text in (text_of(result), str(result.structured_content), stderr_path.read_text()):
        assert KEY not in text


def test_one_ctrl_c_in_a_terminal_stops_the_stdio_server_cleanly(tmp_path: Path) -> None:
    """In a pseudo-terminal, ^C (SIGINT to the foreground group) ends the server: exit 130, no traceback."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the server, its stdin, stdout and stderr on the terminal
        os.environ.update({"SUBAGENT_MCP_DB_PATH": str(tmp_path / "runs.db"), "SUBAGENT_MCP_DEMO": "1"})
        os.execv(str(SCRIPT), [str(SCRIPT)])
    screen = read_until(fd, b"Ctrl-C stops")
    os.write(fd, b"\x03")
    screen += read_until(fd, None)
    _, status = os.waitpid(pid, 0)
    text = screen.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) in (0, 130), text
    assert "Traceback" not in text
    assert "stopping" in text


TTY_HINT = "waits for an MCP host"


def test_started_by_hand_in_a_terminal_the_server_says_on_stderr_how_to_try_it_there_instead(tmp_path: Path) -> None:
    """With a terminal as stdin (a person typed the command), one stderr line explains the silence; no stdout."""
    main, terminal = pty.openpty()
    env = os.environ | {"SUBAGENT_MCP_DB_PATH": str(tmp_path / "runs.db"), "SUBAGENT_MCP_DEMO": "1"}
    with subprocess.Popen([str(SCRIPT)], stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as p:
        os.close(terminal)
        try:
            assert p.stderr is not None
            seen = read_until(p.stderr.fileno(), b"serving MCP on stdio")
        finally:  # the hint is written with that line, before the server first waits: a SIGTERM now cannot lose it
            p.send_signal(signal.SIGTERM)
            stdout, rest = p.communicate(timeout=30)
            os.close(main)
    text = (seen + rest).decode()
    hints = [line for line in text.splitlines() if TTY_HINT in line]
    assert len(hints) == 1, text
    assert 'subagent-mcp run --demo "' in hints[0]
    assert stdout == b""
    assert "Traceback" not in text


def test_started_by_a_host_on_a_pipe_the_server_prints_no_terminal_hint(tmp_path: Path) -> None:
    env = os.environ | {"SUBAGENT_MCP_DB_PATH": str(tmp_path / "runs.db"), "SUBAGENT_MCP_DEMO": "1"}
    served = subprocess.run([str(SCRIPT)], input=b"", capture_output=True, timeout=60, env=env, check=False)
    assert served.returncode == 0, served.stderr
    assert b"serving MCP on stdio" in served.stderr
    assert TTY_HINT.encode() not in served.stderr
    assert served.stdout == b""


def read_until(fd: int, marker: bytes | None, limit_s: float = 30.0) -> bytes:
    """What the terminal shows until ``marker`` appears (or, with None, until the program closes it)."""
    seen = b""
    while marker is None or marker not in seen:
        ready, _, _ = select.select([fd], [], [], limit_s)
        if not ready:
            raise AssertionError(f"nothing more on the terminal after {limit_s} s; it showed: {seen!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the program exited and the terminal closed
            chunk = b""
        if not chunk:
            if marker is None:
                return seen
            raise AssertionError(f"the terminal closed before {marker!r}; it showed: {seen!r}")
        seen += chunk
    return seen


async def test_a_reply_holding_a_lone_surrogate_is_delivered_and_the_server_serves_the_next_call(
    tmp_path: Path,
) -> None:
    # The first reply has a lone surrogate as a JSON escape inside the model's JSON; the second has one as
    # a raw character of the text (the API's JSON escapes it). Either used to kill the stdio writer.
    surrogates = [
        text_reply('{"summary": "bad \\udcff", "text": "t"}'),
        text_reply('{"summary": "s", "text": "\udcff"}'),
    ]
    async with serve_fake_anthropic(api_key=KEY) as fake:
        fake.enqueue(*surrogates)
        env = {
            "ANTHROPIC_API_KEY": KEY,
            "ANTHROPIC_BASE_URL": fake.base_url,
            "SUBAGENT_MCP_ALLOW_REMOTE_MODEL": "0",
            "SUBAGENT_MCP_DB_PATH": str(tmp_path / "runs.db"),
        }
        params = StdioServerParameters(command=str(SCRIPT), args=[], env=env, cwd=str(tmp_path))
        with (tmp_path / "server-stderr.log").open("w") as errlog:
            async with Client(stdio_client(params, errlog=errlog)) as client:
                with anyio.fail_after(30):
                    first = await client.call_tool("run_subagent", {"role": "writer", "instructions": "one"})
                    second = await client.call_tool("run_subagent", {"role": "writer", "instructions": "two"})
                    third = await client.call_tool("run_subagent", {"role": "writer", "instructions": "three"})
    outputs = [SubagentResult.model_validate(r.structured_content).output for r in (first, second, third)]
    assert outputs[0] == {"summary": "bad \ufffd", "text": "t"}
    assert outputs[1] == {"summary": "s", "text": "\ufffd"}
    assert outputs[2] is not None  # the default reply: the server is still there
    assert len(fake.message_requests) == 3
