"""Runs on Temporal: a killed worker loses nothing, a stopped workflow resumes, cancel_run cancels the workflow.

A real Temporal dev server (``executors.temporal_address``), real workers (an OS process running
``subagent-mcp worker`` where one is killed, else in-process), the real server through an MCP client,
and the fake Messages API on 127.0.0.1, whose request log is the evidence of what was sent.
"""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from mcp import Client
from pydantic import SecretStr
from temporalio.client import WorkflowExecutionStatus

from executors import dev_server, free_port, stop
from run_gates import handle_of
from store_setup import OPTIONS
from subagent_mcp.backends.scripted import sample_for_schema
from subagent_mcp.contracts import JsonObject, Plan, RunReport
from subagent_mcp.mcp_runs import RunList
from subagent_mcp.mcp_server import create_server
from subagent_mcp.settings import Settings
from subagent_mcp.store import Store, temporal_owner
from subagent_mcp.temporal.client import connect
from subagent_mcp.temporal.worker import running_worker
from subagent_mcp.testing import FakeAnthropic, FakeReply, FakeRequest, hang_reply, json_reply, serve_fake_anthropic
from subagent_mcp.testing.results import text_of

pytestmark = [pytest.mark.anyio, pytest.mark.temporal]

KEY = "sk-ant-test-temporal"
SCRIPT = Path(sys.executable).with_name("subagent-mcp")
PLAN: JsonObject = {
    "plan_id": "p-temporal",
    "task": "Two parts, then a write-up",
    "subtasks": [
        {"id": "quick", "role": "writer", "instructions": "the quick part", "depends_on": []},
        {"id": "slow", "role": "writer", "instructions": "the slow part", "depends_on": []},
        {"id": "write-up", "role": "writer", "instructions": "both together", "depends_on": ["quick", "slow"]},
    ],
}


class Gates:
    """Replies at once, except that the first request of each subtask the test names hangs until its client leaves."""

    def __init__(self, *hang_first: str) -> None:
        self.hang_first = set(hang_first)
        self.arrived: dict[tuple[str, int], anyio.Event] = {}
        self.seen: Counter[str] = Counter()

    def arrival(self, task: str, nth: int = 1) -> anyio.Event:
        """Set when the ``nth`` request of ``task`` has arrived."""
        return self.arrived.setdefault((task, nth), anyio.Event())

    async def __call__(self, request: FakeRequest) -> FakeReply:
        task = request.subtask_id
        self.seen[task] += 1
        self.arrival(task, self.seen[task]).set()
        if task in self.hang_first and self.seen[task] == 1:
            return hang_reply()  # the fake records the request as abandoned when its connection closes
        return json_reply(sample_for_schema(request.schema or {}))


class SlowWaits:
    """Replies at once, except to subtask "slow", which waits until ``release`` is set."""

    def __init__(self) -> None:
        self.release = anyio.Event()

    async def __call__(self, request: FakeRequest) -> FakeReply:
        if request.subtask_id == "slow":
            await self.release.wait()
        return json_reply(sample_for_schema(request.schema or {}))


def settings_for(fake: FakeAnthropic, address: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "anthropic_api_key": SecretStr(KEY),
        "anthropic_base_url": fake.base_url,
        "db_path": str(tmp_path / "runs.db"),
        "retry_max_wait_s": 0,
        "executor": "temporal",
        "temporal_address": address,
        "temporal_task_queue": f"q-{tmp_path.name}"[:60],
        "temporal_heartbeat_s": 2.0,
    }
    return Settings(**{**values, **overrides})


def database(location: str) -> dict[str, Any]:
    """Settings for the servers and workers to share ``location``: a SQLite file or a PostgreSQL URL."""
    if location.startswith("postgresql://"):
        return {"db_url": location, "db_path": None}
    return {"db_path": location}


def requests_per_task(fake: FakeAnthropic) -> Counter[str]:
    return Counter(r.subtask_id for r in fake.message_requests)


async def succeeded(c: Client, run_id: str, count: int) -> None:
    """Ask wait_run until ``count`` subtasks succeeded (each answer is a read of the workflow's progress)."""
    for _ in range(10_000):
        if handle_of(await c.call_tool("wait_run", {"run_id": run_id, "wait_s": 0})).counts.succeeded >= count:
            return
    raise AssertionError(f"{count} subtasks never succeeded")


@asynccontextmanager
async def worker_process(settings: Settings, log: Path) -> AsyncGenerator[Process]:
    """``subagent-mcp worker`` as an OS process with ``settings`` in its environment; killed at the end."""
    assert settings.anthropic_api_key is not None
    env = {
        **os.environ,
        "ANTHROPIC_API_KEY": settings.anthropic_api_key.get_secret_value(),
        "ANTHROPIC_BASE_URL": str(settings.anthropic_base_url),
        "SUBAGENT_MCP_DB_PATH": str(settings.db_path),
        "SUBAGENT_MCP_EXECUTOR": "temporal",
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "SUBAGENT_MCP_TEMPORAL_TASK_QUEUE": settings.temporal_task_queue,
        "SUBAGENT_MCP_TEMPORAL_HEARTBEAT_S": str(settings.temporal_heartbeat_s),
        "SUBAGENT_MCP_RETRY_MAX_WAIT_S": "0",
    }
    with log.open("ab") as out:
        process = await anyio.open_process([str(SCRIPT), "worker"], env=env, stdout=out, stderr=out)
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def test_a_worker_killed_mid_run_loses_nothing_and_no_finished_subtask_is_requested_again(
    temporal_address: str, tmp_path: Path
) -> None:
    gates = Gates("slow")
    async with serve_fake_anthropic(gates, api_key=KEY) as fake:
        settings = settings_for(fake, temporal_address, tmp_path)
        async with Client(create_server(settings)) as c:  # a server with no worker of its own
            async with worker_process(settings, tmp_path / "worker-1.log") as first:
                run_id = handle_of(await c.call_tool("execute_plan", {"plan": PLAN, "wait_s": 0})).run_id
                await succeeded(c, run_id, 1)  # quick is done and stored
                await gates.arrival("slow").wait()  # slow is in flight on the first worker
                first.send_signal(signal.SIGKILL)
                await first.wait()
            with anyio.fail_after(10):
                await fake.wait_abandoned(1)  # the dead worker's connection is gone
            assert requests_per_task(fake) == {"quick": 1, "slow": 1}
            async with worker_process(settings, tmp_path / "worker-2.log"):
                done = await c.call_tool("wait_run", {"run_id": run_id, "wait_s": 120})
    report = RunReport.model_validate(done.structured_content)
    assert report.status == "succeeded", text_of(done)
    assert requests_per_task(fake) == {"quick": 1, "slow": 2, "write-up": 1}  # only the lost call again
    assert report.usage == fake.billed_usage  # every answered call is on record, none twice


async def test_resume_run_of_a_terminated_workflow_starts_a_new_one_seeded_with_what_succeeded(
    temporal_address: str, tmp_path: Path
) -> None:
    gates = Gates("slow")
    async with serve_fake_anthropic(gates, api_key=KEY) as fake:
        settings = settings_for(fake, temporal_address, tmp_path)
        async with running_worker(settings), Client(create_server(settings)) as c:
            run_id = handle_of(await c.call_tool("execute_plan", {"plan": PLAN, "wait_s": 0})).run_id
            await succeeded(c, run_id, 1)
            await gates.arrival("slow").wait()
            temporal = await connect(settings)
            await temporal.get_workflow_handle(run_id).terminate("an operator stopped it")
            stopped = await c.call_tool("wait_run", {"run_id": run_id, "wait_s": 60})
            with anyio.fail_after(10):
                await fake.wait_abandoned(1)  # the terminated workflow's call was cancelled on its worker
            resumed = await c.call_tool("resume_run", {"run_id": run_id, "wait_s": 60})
    assert stopped.is_error
    assert f"resume_run(run_id={run_id!r}) runs the rest" in text_of(stopped)
    report = RunReport.model_validate(resumed.structured_content)
    assert report.status == "succeeded", text_of(resumed)
    assert requests_per_task(fake) == {"quick": 1, "slow": 2, "write-up": 1}
    assert report.usage == fake.billed_usage  # both workflows of the run, every answered call


async def test_cancel_run_cancels_the_workflow_and_its_calls(temporal_address: str, tmp_path: Path) -> None:
    gates = Gates("quick", "slow")
    async with serve_fake_anthropic(gates, api_key=KEY) as fake:
        settings = settings_for(fake, temporal_address, tmp_path)
        async with running_worker(settings), Client(create_server(settings)) as c:
            run_id = handle_of(await c.call_tool("execute_plan", {"plan": PLAN, "wait_s": 0})).run_id
            await gates.arrival("quick").wait()
            await gates.arrival("slow").wait()
            cancelled = await c.call_tool("cancel_run", {"run_id": run_id})
            description = await (await connect(settings)).get_workflow_handle(run_id).describe()
            with anyio.fail_after(10):
                await fake.wait_abandoned(2)
    assert RunReport.model_validate(cancelled.structured_content).status == "cancelled"
    assert description.status == WorkflowExecutionStatus.CANCELED
    assert requests_per_task(fake) == {"quick": 1, "slow": 1}


async def test_an_unreachable_temporal_is_a_clear_tool_error_and_creates_no_run(tmp_path: Path) -> None:
    async with serve_fake_anthropic(Gates(), api_key=KEY) as fake:
        settings = settings_for(fake, f"127.0.0.1:{free_port()}", tmp_path, temporal_connect_s=3.0)
        async with Client(create_server(settings)) as c:
            with anyio.fail_after(30):
                result = await c.call_tool("execute_plan", {"plan": PLAN})
            runs = await c.call_tool("list_runs", {})
    assert result.is_error
    assert f"Temporal at {settings.temporal_address}" in text_of(result)
    assert "TEMPORAL_ADDRESS" in text_of(result)
    assert runs.structured_content == {"runs": []}
    assert fake.message_requests == []


async def test_without_the_temporal_sdk_a_run_is_a_tool_error_that_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "temporalio", None)  # how Python sees a package that is not installed
    async with serve_fake_anthropic(Gates(), api_key=KEY) as fake:
        settings = settings_for(fake, "127.0.0.1:7233", tmp_path)
        async with Client(create_server(settings)) as c:
            result = await c.call_tool("execute_plan", {"plan": PLAN})
            runs = await c.call_tool("list_runs", {})
    assert result.is_error
    assert 'pip install "subagent-mcp[scale]"' in text_of(result)
    assert runs.structured_content == {"runs": []}
    assert fake.message_requests == []


async def test_a_worker_that_cannot_reach_temporal_says_so_and_exits_2(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ANTHROPIC_API_KEY": KEY,
        "SUBAGENT_MCP_DB_PATH": str(tmp_path / "runs.db"),
        "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
        "SUBAGENT_MCP_TEMPORAL_CONNECT_S": "3",
    }
    with anyio.fail_after(30):
        done = await anyio.run_process([str(SCRIPT), "worker"], env=env, check=False)
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    assert f"Temporal at {env['TEMPORAL_ADDRESS']}" in stderr
    assert "Traceback" not in stderr
    assert KEY not in stderr


async def test_a_run_started_through_one_server_is_waited_on_and_cancelled_through_another(
    temporal_address: str, tmp_path: Path, db_location: str
) -> None:
    slow = SlowWaits()
    async with serve_fake_anthropic(slow, api_key=KEY) as fake:
        settings = settings_for(fake, temporal_address, tmp_path, **database(db_location))
        async with (
            running_worker(settings),
            Client(create_server(settings)) as first,
            Client(create_server(settings)) as second,  # another replica on the same store and Temporal
        ):
            waited = handle_of(await first.call_tool("execute_plan", {"plan": PLAN, "wait_s": 0})).run_id
            cancelled = handle_of(await first.call_tool("execute_plan", {"plan": PLAN, "wait_s": 0})).run_id
            await succeeded(second, waited, 1)  # progress through the second server
            stopped = await second.call_tool("cancel_run", {"run_id": cancelled})
            slow.release.set()
            done = await second.call_tool("wait_run", {"run_id": waited, "wait_s": 60})
    assert (done.structured_content or {}).get("status") == "succeeded", text_of(done)  # not a handle or an error
    assert RunReport.model_validate(done.structured_content).status == "succeeded"
    assert RunReport.model_validate(stopped.structured_content).status == "cancelled", text_of(stopped)


async def test_a_run_on_temporal_outlives_its_server_and_is_its_workflows_not_interrupted(
    temporal_address: str, tmp_path: Path
) -> None:
    slow = SlowWaits()
    async with serve_fake_anthropic(slow, api_key=KEY) as fake:
        settings = settings_for(fake, temporal_address, tmp_path)
        async with running_worker(settings):
            async with Client(create_server(settings)) as first:
                run_id = handle_of(await first.call_tool("execute_plan", {"plan": PLAN, "wait_s": 0})).run_id
                await succeeded(first, run_id, 1)
            # the first server has shut down while its run was going: the run is still the workflow's
            async with Client(create_server(settings)) as second:
                listed = await second.call_tool("list_runs", {})
                slow.release.set()
                done = await second.call_tool("wait_run", {"run_id": run_id, "wait_s": 60})
    owner = temporal_owner(settings.temporal_namespace, settings.temporal_task_queue)
    assert [(r["run_id"], r["status"]) for r in (listed.structured_content or {})["runs"]] == [(run_id, "running")]
    report = RunReport.model_validate(done.structured_content)
    assert report.status == "succeeded", text_of(done)
    assert requests_per_task(fake) == {"quick": 1, "slow": 1, "write-up": 1}
    async with Store.open(str(settings.db_path)) as store:
        record = await store.get_run(run_id)
    assert record is not None
    assert record.owner == owner  # held by Temporal, not by the server that started it


async def test_batch_mode_on_temporal_is_a_clear_tool_error_before_anything_is_planned_or_run(tmp_path: Path) -> None:
    async with serve_fake_anthropic(Gates(), api_key=KEY) as fake:
        settings = settings_for(fake, f"127.0.0.1:{free_port()}", tmp_path)  # refused before Temporal is reached
        async with Client(create_server(settings)) as c:
            results = [
                await c.call_tool("execute_plan", {"plan": PLAN, "batch": True}),
                await c.call_tool("orchestrate", {"task": "Two parts, then a write-up", "batch": True}),
            ]
            runs = await c.call_tool("list_runs", {})
    for result in results:
        assert result.is_error
        assert "batch=true is not available with SUBAGENT_MCP_EXECUTOR=temporal" in text_of(result)
    assert runs.structured_content == {"runs": []}
    assert fake.message_requests == []


async def status_seen_by(c: Client, run_id: str, tool: str) -> str:
    """The run's status as ``wait_run`` (a handle, at once) or ``list_runs`` reports it."""
    if tool == "wait_run":
        return handle_of(await c.call_tool("wait_run", {"run_id": run_id, "wait_s": 0})).status
    listed = RunList.model_validate((await c.call_tool("list_runs", {})).structured_content)
    return next(r.status for r in listed.runs if r.run_id == run_id)


@pytest.mark.parametrize("tool", ["wait_run", "list_runs"])
async def test_a_workflow_terminated_while_no_server_follows_it_is_found_by_the_next_look_and_resumed(
    temporal_address: str, tmp_path: Path, tool: str
) -> None:
    gates = Gates("slow")
    async with serve_fake_anthropic(gates, api_key=KEY) as fake:
        settings = settings_for(fake, temporal_address, tmp_path)
        async with running_worker(settings):
            async with Client(create_server(settings)) as first:
                run_id = handle_of(await first.call_tool("execute_plan", {"plan": PLAN, "wait_s": 0})).run_id
                await succeeded(first, run_id, 1)
                await gates.arrival("slow").wait()
            await (await connect(settings)).get_workflow_handle(run_id).terminate("an operator stopped it")
            async with Client(create_server(settings)) as second:
                seen = await status_seen_by(second, run_id, tool)
                resumed = await second.call_tool("resume_run", {"run_id": run_id, "wait_s": 60})
    assert seen == "interrupted"
    report = RunReport.model_validate(resumed.structured_content)
    assert report.status == "succeeded", text_of(resumed)
    assert requests_per_task(fake) == {"quick": 1, "slow": 2, "write-up": 1}  # what succeeded is never asked again


async def test_cancel_run_of_a_run_on_temporal_through_a_server_without_temporal_says_where_to_cancel_it(
    tmp_path: Path,
) -> None:
    async with serve_fake_anthropic(Gates(), api_key=KEY) as fake:
        settings = settings_for(fake, f"127.0.0.1:{free_port()}", tmp_path)
        async with Store.open(str(settings.db_path)) as store:  # a run as a Temporal server creates it
            temporal = store.as_owner(temporal_owner(settings.temporal_namespace, settings.temporal_task_queue))
            await temporal.save_plan(Plan.model_validate(PLAN))
            await temporal.create_run("run-on-temporal", "p-temporal", OPTIONS)
        async with Client(create_server(settings.model_copy(update={"executor": "embedded"}))) as c:
            result = await c.call_tool("cancel_run", {"run_id": "run-on-temporal"})
    assert result.is_error
    assert "runs on Temporal" in text_of(result)
    assert "SUBAGENT_MCP_EXECUTOR=temporal" in text_of(result)


async def test_a_run_whose_workflow_is_not_started_yet_is_not_taken_for_gone_but_one_long_without_it_is(
    temporal_address: str, tmp_path: Path
) -> None:
    async with serve_fake_anthropic(Gates(), api_key=KEY) as fake:
        settings = settings_for(fake, temporal_address, tmp_path)
        owner = temporal_owner(settings.temporal_namespace, settings.temporal_task_queue)
        an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
        async with Store.open(str(settings.db_path), owner=owner) as store:  # stored as its server does, before
            await store.save_plan(Plan.model_validate(PLAN))  # it starts the workflow (another server may look then)
            await store.create_run("run-starting", "p-temporal", OPTIONS)
        async with Store.open(str(settings.db_path), owner=owner, now=lambda: an_hour_ago) as store:
            await store.create_run("run-long-gone", "p-temporal", OPTIONS)  # its server died before starting it
        async with Client(create_server(settings)) as c:
            starting = await c.call_tool("wait_run", {"run_id": "run-starting", "wait_s": 0})
            gone = await c.call_tool("wait_run", {"run_id": "run-long-gone", "wait_s": 0})
            listed = await c.call_tool("list_runs", {})
    assert handle_of(starting).status == "running", text_of(starting)
    assert handle_of(gone).status == "interrupted", text_of(gone)
    runs = RunList.model_validate(listed.structured_content).runs
    assert {r.run_id: r.status for r in runs} == {"run-starting": "running", "run-long-gone": "interrupted"}


async def test_a_temporal_that_stops_answering_never_marks_a_running_run_interrupted(tmp_path: Path) -> None:
    with dev_server(tmp_path) as (address, server):
        async with serve_fake_anthropic(Gates(), api_key=KEY) as fake:
            settings = settings_for(fake, address, tmp_path, temporal_connect_s=1.0)
            async with Store.open(str(settings.db_path)) as store:  # a run as a Temporal server creates it
                temporal = store.as_owner(temporal_owner(settings.temporal_namespace, settings.temporal_task_queue))
                await temporal.save_plan(Plan.model_validate(PLAN))
                await temporal.create_run("run-on-temporal", "p-temporal", OPTIONS)
            await connect(settings)  # this loop's client, which the server reuses, made while Temporal answers
            stop(server)
            async with Client(create_server(settings)) as c:
                listed = await c.call_tool("list_runs", {})
                waited = await c.call_tool("wait_run", {"run_id": "run-on-temporal", "wait_s": 0})
            async with Store.open(str(settings.db_path)) as store:
                record = await store.get_run("run-on-temporal")
    assert [r.status for r in RunList.model_validate(listed.structured_content).runs] == ["running"]
    assert waited.is_error
    assert "could not say whether run run-on-temporal's workflow is running" in text_of(waited)
    assert record is not None
    assert record.status == "running"  # not "interrupted" on a guess: its workflow may well be running
