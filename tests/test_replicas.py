"""Several servers on one database (a SQLite file, or PostgreSQL): a run started through one is listed, read,
waited for, cancelled and resumed through another.

Real MCP clients: two servers in the test's process, or a stdio server process (SIGKILLed mid-run) beside
one in the test's process: two OS processes on one database. The model
is the fake Messages API on 127.0.0.1, whose replies are held until the test lets them go; its request log
(and which connections were abandoned) is the evidence of what each server did.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from pydantic import SecretStr

from run_gates import Gates, handle_of, plan, task_of
from subagent_mcp.backends.scripted import sample_for_schema
from subagent_mcp.contracts import OrchestrateResult, RunReport
from subagent_mcp.demo import demo_plan_draft
from subagent_mcp.mcp_server import create_server
from subagent_mcp.settings import Settings
from subagent_mcp.store import Store
from subagent_mcp.testing import FakeAnthropic, FakeReply, FakeRequest, json_reply, serve_fake_anthropic
from subagent_mcp.testing.results import text_of

pytestmark = pytest.mark.anyio

KEY = "sk-ant-test-replicas"
LEASE_S = "1"
"""Short leases: a heartbeat every third of a second, so a cancel request reaches the owner quickly."""

SCRIPT = Path(sys.executable).with_name("subagent-mcp")


def where(location: str) -> dict[str, Any]:
    return {"db_url": SecretStr(location)} if location.startswith("postgresql://") else {"db_path": location}


def settings_for(fake: FakeAnthropic, location: str) -> Settings:
    return Settings(
        anthropic_api_key=SecretStr(KEY),
        anthropic_base_url=fake.base_url,
        retry_max_wait_s=0,
        lease_s=float(LEASE_S),
        **where(location),
    )


async def test_a_run_started_on_one_server_is_listed_read_and_waited_for_on_another(db_location: str) -> None:
    gates = Gates()
    b_is_waiting = anyio.Event()
    done: dict[str, Any] = {}

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        b_is_waiting.set()

    async with (
        serve_fake_anthropic(gates, api_key=KEY) as fake,
        Client(create_server(settings_for(fake, db_location))) as a,
        Client(create_server(settings_for(fake, db_location))) as b,
    ):
        handle = handle_of(await a.call_tool("execute_plan", {"plan": plan("x", "y", "z"), "wait_s": 0}))
        run_id = handle.run_id
        for task in ("x", "y", "z"):
            await gates.arrived[task].wait()
        gates.release("x")

        listed = await b.call_tool("list_runs", {})
        resource = (await b.read_resource(f"subagent://runs/{run_id}")).contents[0]
        early = handle_of(await b.call_tool("wait_run", {"run_id": run_id, "wait_s": 0}))

        async def wait_on_b() -> None:
            done["b"] = await b.call_tool("wait_run", {"run_id": run_id, "wait_s": 30}, progress_callback=on_progress)

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_on_b)
            await b_is_waiting.wait()  # B is polling the store while A still runs y and z
            assert "b" not in done
            gates.release("y", "z")
        done["a"] = await a.call_tool("wait_run", {"run_id": run_id})

    assert listed.structured_content is not None
    assert [(r["run_id"], r["status"]) for r in listed.structured_content["runs"]] == [(run_id, "running")]
    assert f'"run_id": "{run_id}"' in getattr(resource, "text", "")
    assert (early.status, early.counts.total) == ("running", 3)
    assert f"wait_run(run_id={run_id!r})" in early.next
    on_b = RunReport.model_validate(done["b"].structured_content)
    assert on_b.status == "succeeded"
    assert on_b == RunReport.model_validate(done["a"].structured_content)  # the same report the owner gives
    assert sorted(task_of(r) for r in fake.message_requests) == ["x", "y", "z"]  # run once, by A


async def test_cancel_run_on_another_server_cancels_the_run_where_it_runs(db_location: str) -> None:
    gates = Gates(hold={"x", "y"})
    async with (
        serve_fake_anthropic(gates, api_key=KEY) as fake,
        Client(create_server(settings_for(fake, db_location))) as a,
        Client(create_server(settings_for(fake, db_location))) as b,
    ):
        handle = handle_of(await a.call_tool("execute_plan", {"plan": plan("x", "y"), "wait_s": 0}))
        await gates.arrived["x"].wait()
        await gates.arrived["y"].wait()

        cancelled = await b.call_tool("cancel_run", {"run_id": handle.run_id})
        with anyio.fail_after(10):
            await fake.wait_abandoned(2)  # A closed both requests in flight
        on_a = await a.call_tool("wait_run", {"run_id": handle.run_id, "wait_s": 0})
        again = await b.call_tool("cancel_run", {"run_id": handle.run_id})

    assert not cancelled.is_error, text_of(cancelled)
    report = RunReport.model_validate(cancelled.structured_content)
    assert report.status == "cancelled"
    assert {r.task_id: r.status for r in report.results} == {"x": "cancelled", "y": "cancelled"}
    assert RunReport.model_validate(on_a.structured_content) == report  # A answers with the run as stored
    assert again.is_error
    assert "it ended cancelled" in text_of(again)


def role_of(request: FakeRequest) -> str:
    """The planner, the synthesis, or the subtask a request is for."""
    if "Plan the user's task" in request.system_text:
        return "(planner)"
    if request.schema is not None and "answer" in request.schema.get("properties", {}):
        return "(synthesis)"
    return request.subtask_id


async def test_wait_run_on_another_server_returns_the_orchestration_once_its_owner_has_synthesized_it(
    db_location: str,
) -> None:
    synthesis_arrived, synthesis_may_answer = anyio.Event(), anyio.Event()
    done: dict[str, Any] = {}

    async def handler(request: FakeRequest) -> FakeReply:
        if role_of(request) == "(planner)":
            return json_reply(demo_plan_draft())
        if role_of(request) == "(synthesis)":
            synthesis_arrived.set()
            await synthesis_may_answer.wait()
        return json_reply(sample_for_schema(request.schema or {}))

    async with (
        serve_fake_anthropic(handler, api_key=KEY) as fake,
        Client(create_server(settings_for(fake, db_location))) as a,
        Client(create_server(settings_for(fake, db_location))) as b,
    ):
        run_id = handle_of(await a.call_tool("orchestrate", {"task": "Compare two databases", "wait_s": 0})).run_id
        await synthesis_arrived.wait()  # the subtasks are done and stored; A is synthesizing
        meanwhile = handle_of(await b.call_tool("wait_run", {"run_id": run_id, "wait_s": 0}))

        async def wait_on_b() -> None:
            done["b"] = await b.call_tool("wait_run", {"run_id": run_id, "wait_s": 30})

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_on_b)
            synthesis_may_answer.set()
        done["a"] = await a.call_tool("wait_run", {"run_id": run_id})

    assert (meanwhile.status, meanwhile.phase) == ("running", "synthesizing")
    on_b = OrchestrateResult.model_validate(done["b"].structured_content)
    assert on_b.synthesis is not None
    assert on_b.synthesis == OrchestrateResult.model_validate(done["a"].structured_content).synthesis
    assert on_b.total == OrchestrateResult.model_validate(done["a"].structured_content).total
    assert sorted(role_of(r) for r in fake.message_requests).count("(synthesis)") == 1


async def hand_over(location: str, run_id: str, owner: str) -> None:
    """Make ``owner`` the run's owner in the database, as a server that resumed it after a lapsed lease would."""
    if location.startswith("postgresql://"):
        conn = await asyncpg.connect(location)
        try:
            await conn.execute("UPDATE runs SET owner = $1 WHERE run_id = $2", owner, run_id)
        finally:
            await conn.close()
        return
    with contextlib.closing(sqlite3.connect(location, timeout=5)) as conn, conn:
        conn.execute("UPDATE runs SET owner = ? WHERE run_id = ?", (owner, run_id))


async def test_a_server_whose_run_was_taken_over_stops_it_and_leaves_the_new_owners_record_alone(
    db_location: str,
) -> None:
    gates = Gates(hold={"x", "y"})
    async with (
        serve_fake_anthropic(gates, api_key=KEY) as fake,
        Client(create_server(settings_for(fake, db_location))) as a,
    ):
        handle = handle_of(await a.call_tool("execute_plan", {"plan": plan("x", "y"), "wait_s": 0}))
        await gates.arrived["x"].wait()
        await gates.arrived["y"].wait()

        await hand_over(db_location, handle.run_id, "another-server")
        with anyio.fail_after(10):
            await fake.wait_abandoned(2)  # A's heartbeat learnt it and stopped its calls
        on_a = await a.call_tool("wait_run", {"run_id": handle.run_id, "wait_s": 10})
        async with Store.open(db_location) as store:
            record = await store.get_run(handle.run_id)

    stopped = handle_of(on_a)  # A's run ended (stopped) and recorded nothing: A answers with the run as stored
    assert (stopped.status, stopped.next) == (
        "running", f"another server (another-server) runs it; wait_run(run_id={handle.run_id!r}) waits here"
    )  # fmt: skip
    assert record is not None
    assert (record.status, record.owner, record.report) == ("running", "another-server", None)


def stdio_params(fake: FakeAnthropic, location: str, cwd: Path) -> StdioServerParameters:
    """The console script on stdio, as a host starts it, on the shared database with short leases."""
    db = (
        {"SUBAGENT_MCP_DB_URL": location}
        if location.startswith("postgresql://")
        else {"SUBAGENT_MCP_DB_PATH": location}
    )
    env = {
        "ANTHROPIC_API_KEY": KEY,
        "ANTHROPIC_BASE_URL": fake.base_url,
        "SUBAGENT_MCP_ALLOW_REMOTE_MODEL": "0",
        "SUBAGENT_MCP_LEASE_S": LEASE_S,
        **db,
    }
    return StdioServerParameters(command=str(SCRIPT), args=[], env=env, cwd=str(cwd))


@pytest.mark.subprocess
async def test_two_server_processes_share_a_run_and_the_survivor_resumes_it_after_a_sigkill(
    db_location: str, tmp_path: Path
) -> None:
    gates = Gates(hold={"slow"})
    gates.release("fast", "after")
    job = plan("fast", "slow", "after", deps={"after": ["fast"]})
    two_done = anyio.Event()
    waited: dict[str, Any] = {}
    run_id = ""

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        if progress >= 2:
            two_done.set()

    async def wait_on_b(b: Client, run_id: str) -> None:
        waited["b"] = await b.call_tool("wait_run", {"run_id": run_id, "wait_s": 30}, progress_callback=on_progress)

    async with serve_fake_anthropic(gates, api_key=KEY) as fake:
        params = stdio_params(fake, db_location, tmp_path)
        with (tmp_path / "a.log").open("w") as a_log, anyio.fail_after(60):
            async with Client(create_server(settings_for(fake, db_location))) as b:  # in this test's process
                async with anyio.create_task_group() as tg:
                    with contextlib.suppress(Exception):  # A dies under its client, which then reaps it
                        async with Client(stdio_client(params, errlog=a_log)) as a:
                            run_id = handle_of(await a.call_tool("execute_plan", {"plan": job, "wait_s": 0})).run_id
                            await gates.arrived["slow"].wait()
                            tg.start_soon(wait_on_b, b, run_id)
                            await two_done.wait()  # B read fast and after from the store, stored there by A
                            async with Store.open(db_location) as store:
                                record = await store.get_run(run_id)
                            assert record is not None
                            os.kill(record.pid, signal.SIGKILL)
                            await fake.wait_abandoned(1)
                before = [task_of(r) for r in fake.message_requests]
                gates.hold.clear()
                gates.release("slow")
                listed = await b.call_tool("list_runs", {})
                resumed = await b.call_tool("resume_run", {"run_id": run_id, "wait_s": 30})
        after = [task_of(r) for r in fake.message_requests[len(before) :]]

    stopped = handle_of(waited["b"])  # B's wait ended when A died, with where the run stands
    assert (stopped.status, stopped.counts.succeeded) == ("interrupted", 2)
    assert f"resume_run(run_id={run_id!r})" in stopped.next
    assert sorted(before) == ["after", "fast", "slow"]
    assert listed.structured_content is not None
    assert listed.structured_content["runs"][0]["status"] == "interrupted"
    assert not resumed.is_error, text_of(resumed)
    assert after == ["slow"]  # only what had not finished
    report = RunReport.model_validate(resumed.structured_content)
    assert report.status == "succeeded"
    assert report.usage == fake.billed_usage  # every billed request of both processes is accounted for
