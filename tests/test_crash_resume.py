"""A run survives SIGKILL of the server mid-run: after a restart, resume requests only what had not succeeded.

The server is the installed console script on stdio with a file database; the model is the fake
Messages API on 127.0.0.1, whose request log is the evidence.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from subagent_mcp.backends.scripted import sample_for_schema
from subagent_mcp.contracts import JsonObject, RunReport
from subagent_mcp.testing import FakeAnthropic, FakeReply, FakeRequest, hang_reply, json_reply, serve_fake_anthropic
from subagent_mcp.testing.results import text_of

pytestmark = [pytest.mark.anyio, pytest.mark.subprocess]

SCRIPT = Path(sys.executable).with_name("subagent-mcp")
KEY = "sk-ant-test-crash"
PLAN: JsonObject = {
    "plan_id": "p-crash",
    "task": "Four parts, two of them slow",
    "subtasks": [
        {"id": "fast-a", "role": "writer", "instructions": "a", "depends_on": []},
        {"id": "fast-b", "role": "writer", "instructions": "b", "depends_on": []},
        {"id": "slow-c", "role": "writer", "instructions": "c", "depends_on": ["fast-a"]},
        {"id": "slow-d", "role": "writer", "instructions": "d", "depends_on": []},
    ],
}


def server_params(fake: FakeAnthropic, db: Path, cwd: Path) -> StdioServerParameters:
    """The console script on stdio as a host starts it: a minimal env with the key, the fake and the database."""
    env = {
        "ANTHROPIC_API_KEY": KEY,
        "ANTHROPIC_BASE_URL": fake.base_url,
        "SUBAGENT_MCP_ALLOW_REMOTE_MODEL": "0",
        "SUBAGENT_MCP_DB_PATH": str(db),
    }
    return StdioServerParameters(command=str(SCRIPT), args=[], env=env, cwd=str(cwd))


def task_of(request: FakeRequest) -> str:
    return request.subtask_id


async def test_sigkill_mid_run_then_resume_requests_no_succeeded_task_again(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    slow_in_flight: set[str] = set()
    both_slow_in_flight = anyio.Event()
    saved: set[str] = set()
    fast_saved = anyio.Event()
    crashed = True

    def handler(request: FakeRequest) -> FakeReply:
        task = task_of(request)
        if task.startswith("slow") and crashed:
            slow_in_flight.add(task)
            if len(slow_in_flight) == 2:
                both_slow_in_flight.set()
            return hang_reply()
        return json_reply(sample_for_schema(request.schema or {}))

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        # progress for a finished task is sent only after its result was committed to the database
        for task in ("fast-a", "fast-b"):
            if (message or "").startswith(f"{task} succeeded"):
                saved.add(task)
        if saved == {"fast-a", "fast-b"}:
            fast_saved.set()

    async with serve_fake_anthropic(handler, api_key=KEY) as fake:
        params = server_params(fake, db, tmp_path)

        async def call(client: Client) -> None:
            with contextlib.suppress(Exception):  # the server dies under this call
                await client.call_tool("execute_plan", {"plan": PLAN}, progress_callback=on_progress)

        with (tmp_path / "first.log").open("w") as errlog, anyio.fail_after(60), contextlib.suppress(Exception):
            async with Client(stdio_client(params, errlog=errlog)) as client, anyio.create_task_group() as tg:
                tg.start_soon(call, client)
                await fast_saved.wait()
                await both_slow_in_flight.wait()
                with sqlite3.connect(db) as conn:
                    (pid,) = conn.execute("SELECT pid FROM runs").fetchone()
                os.kill(pid, signal.SIGKILL)
                tg.cancel_scope.cancel()

        before_restart = [task_of(r) for r in fake.message_requests]
        crashed = False
        with (tmp_path / "second.log").open("w") as errlog, anyio.fail_after(60):
            async with Client(stdio_client(params, errlog=errlog)) as client:
                listed = await client.call_tool("list_runs", {})
                assert listed.structured_content is not None
                (run,) = listed.structured_content["runs"]
                resumed = await client.call_tool("resume_run", {"run_id": run["run_id"]})
        after_restart = [task_of(r) for r in fake.message_requests[len(before_restart) :]]

    assert sorted(before_restart) == ["fast-a", "fast-b", "slow-c", "slow-d"]
    assert run["status"] == "interrupted"
    assert not resumed.is_error, text_of(resumed)
    assert sorted(after_restart) == ["slow-c", "slow-d"]  # no task that had succeeded was requested again
    report = RunReport.model_validate(resumed.structured_content)
    assert report.status == "succeeded"
    assert {r.task_id: r.status for r in report.results} == {
        "fast-a": "succeeded",
        "fast-b": "succeeded",
        "slow-c": "succeeded",
        "slow-d": "succeeded",
    }
    assert report.usage == fake.billed_usage  # every billed request of both processes is accounted for


async def test_a_host_closing_stdio_mid_run_leaves_it_interrupted_and_resume_requests_no_finished_task(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.db"
    slow_arrived = {"slow-c": anyio.Event(), "slow-d": anyio.Event()}
    first_session = True

    def handler(request: FakeRequest) -> FakeReply:
        task = task_of(request)
        if task in slow_arrived and first_session:
            slow_arrived[task].set()
            return hang_reply()
        return json_reply(sample_for_schema(request.schema or {}))

    async with serve_fake_anthropic(handler, api_key=KEY) as fake:
        params = server_params(fake, db, tmp_path)
        with (tmp_path / "first.log").open("w") as errlog, anyio.fail_after(60):
            async with Client(stdio_client(params, errlog=errlog)) as client:
                started = await client.call_tool("execute_plan", {"plan": PLAN, "wait_s": 0})
                run_id = started.structured_content["run_id"]
                for arrived in slow_arrived.values():
                    await arrived.wait()
                succeeded = 0
                while succeeded < 2:  # both fast tasks stored (a run counts a result once it is committed)
                    progress = await client.call_tool("wait_run", {"run_id": run_id, "wait_s": 1})
                    succeeded = progress.structured_content["counts"]["succeeded"]
            # leaving the block closes the server's stdin, as a host does when it quits
        before_restart = [task_of(r) for r in fake.message_requests]
        first_session = False
        with (tmp_path / "second.log").open("w") as errlog, anyio.fail_after(60):
            async with Client(stdio_client(params, errlog=errlog)) as client:
                listed = await client.call_tool("list_runs", {})
                resumed = await client.call_tool("resume_run", {"run_id": run_id})
        after_restart = [task_of(r) for r in fake.message_requests[len(before_restart) :]]

    assert listed.structured_content is not None
    assert listed.structured_content["runs"][0]["status"] == "interrupted"
    assert "stopped at shutdown, resume them later" in (tmp_path / "first.log").read_text()
    assert sorted(before_restart) == ["fast-a", "fast-b", "slow-c", "slow-d"]
    assert sorted(after_restart) == ["slow-c", "slow-d"]  # no task that had succeeded was requested again
    report = RunReport.model_validate(resumed.structured_content)
    assert report.status == "succeeded"
    assert report.usage == fake.billed_usage
