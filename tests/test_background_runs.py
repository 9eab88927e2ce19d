"""Runs outlive the tool call: a handle within wait_s, wait_run, cancel_run, several runs in one server.

Through a real in-memory MCP client and the real Anthropic backend on the fake Messages API, whose
replies are held until the test lets them go (scripted latencies, no sleeps); its request log is the
evidence of what was sent.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError
from pydantic import SecretStr

from executors import Executor
from run_gates import Gates, handle_of, plan, task_of
from subagent_mcp import background
from subagent_mcp.backends.scripted import ScriptedBackend, sample_for_schema
from subagent_mcp.contracts import OrchestrateResult, Plan, RunReport
from subagent_mcp.handles import RunHandle
from subagent_mcp.mcp_server import create_server
from subagent_mcp.service import Service
from subagent_mcp.settings import Settings
from subagent_mcp.testing import FakeAnthropic, FakeReply, FakeRequest, json_reply, serve_fake_anthropic
from subagent_mcp.testing.results import text_of

pytestmark = pytest.mark.anyio

KEY = "sk-ant-test-background-runs"


def settings_for(fake: FakeAnthropic, **overrides: Any) -> Settings:
    base: dict[str, Any] = {"db_path": ":memory:", "retry_max_wait_s": 0}
    return Settings(anthropic_api_key=SecretStr(KEY), anthropic_base_url=fake.base_url, **{**base, **overrides})


async def test_execute_plan_with_no_wait_hands_back_a_handle_and_wait_run_the_report(executor: Executor) -> None:
    gates = Gates()
    async with (
        serve_fake_anthropic(gates, api_key=KEY) as fake,
        executor.serving(settings_for(fake)) as settings,
        Client(create_server(settings)) as c,
    ):
        started = await c.call_tool("execute_plan", {"plan": plan("a", "b", "c", deps={"c": ["a"]}), "wait_s": 0})
        handle = handle_of(started)
        assert (handle.status, handle.plan_id) == ("running", "p-a-b-c")
        assert (handle.counts.total, handle.counts.pending) == (3, 3)
        assert f"wait_run(run_id={handle.run_id!r})" in text_of(started)

        await gates.arrived["a"].wait()
        await gates.arrived["b"].wait()
        progress = handle_of(await c.call_tool("wait_run", {"run_id": handle.run_id, "wait_s": 0}))
        assert progress.counts.model_dump() == {
            "total": 3, "done": 0, "succeeded": 0, "failed": 0, "skipped": 0, "cancelled": 0, "running": 2,
            "pending": 1,
        }  # fmt: skip
        assert "RUNNING" in text_of(await c.call_tool("wait_run", {"run_id": handle.run_id, "wait_s": 0}))

        gates.release("a", "b", "c")
        done = await c.call_tool("wait_run", {"run_id": handle.run_id})
        again = await c.call_tool("wait_run", {"run_id": handle.run_id})
    report = RunReport.model_validate(done.structured_content)
    assert report.status == "succeeded"
    assert [r.output["summary"] for r in report.results if r.output] == ["a done", "b done", "c done"]
    assert sorted(task_of(r) for r in fake.message_requests) == ["a", "b", "c"]  # each requested once
    assert report.usage == fake.billed_usage
    assert RunReport.model_validate(again.structured_content) == report


async def handle_when(c: Client, run_id: str, ready: Callable[[RunHandle], bool], within_s: float = 30) -> RunHandle:
    """Ask wait_run until ``ready`` holds: a result reaches the handle after its store commit, not at once.

    Each ask lets the server wait a moment (wait_s=0.01), so the commit's worker thread is not starved by a
    loop of instant asks on a loaded machine; the bound is on the whole, not on a count of asks.
    """
    handle = None
    try:
        with anyio.fail_after(within_s):
            while True:
                handle = handle_of(await c.call_tool("wait_run", {"run_id": run_id, "wait_s": 0.01}))
                if ready(handle):
                    return handle
    except TimeoutError:
        raise AssertionError(f"after {within_s} s the handle is still {handle}") from None


async def test_a_handle_carries_each_subtask_so_far_and_the_report_its_dependency_graph(executor: Executor) -> None:
    """What a live view draws: every subtask in plan order, its dependencies, and how far it got."""
    gates = Gates()
    async with (
        serve_fake_anthropic(gates, api_key=KEY) as fake,
        executor.serving(settings_for(fake)) as settings,
        Client(create_server(settings)) as c,
    ):
        started = await c.call_tool("execute_plan", {"plan": plan("a", "b", "c", deps={"c": ["a"]}), "wait_s": 0})
        run_id = handle_of(started).run_id
        await gates.arrived["a"].wait()
        await gates.arrived["b"].wait()
        first = await handle_when(c, run_id, lambda h: h.counts.running == 2)
        assert [(t.task_id, t.role, t.depends_on, t.status) for t in first.tasks] == [
            ("a", "writer", [], "running"), ("b", "writer", [], "running"), ("c", "writer", ["a"], "pending"),
        ]  # fmt: skip
        assert all(t.started_at_s is not None for t in first.tasks[:2])
        assert first.tasks[2].started_at_s is None

        gates.release("a")
        await gates.arrived["c"].wait()
        second = await handle_when(c, run_id, lambda h: h.counts.running == 2 and h.counts.succeeded == 1)
        assert [t.status for t in second.tasks] == ["succeeded", "running", "running"]
        assert second.tasks[0].usage.output_tokens > 0
        assert second.tasks[0].finished_at_s is not None

        gates.release("b", "c")
        report = RunReport.model_validate((await c.call_tool("wait_run", {"run_id": run_id})).structured_content)
    assert report.graph == {"a": [], "b": [], "c": ["a"]}


async def test_orchestrate_hands_back_a_handle_while_planning_and_wait_run_returns_synthesis_and_total(
    tmp_path: Path, executor: Executor
) -> None:
    gates = Gates()
    db = str(tmp_path / "runs.db")
    async with (
        serve_fake_anthropic(gates, api_key=KEY) as fake,
        executor.serving(settings_for(fake, db_path=db)) as settings,
    ):
        async with Client(create_server(settings)) as c:
            started = handle_of(await c.call_tool("orchestrate", {"task": "Pick a database", "wait_s": 0}))
            assert (started.status, started.phase, started.plan_id) == ("running", "planning", None)
            gates.release("(planner)", "research-a", "research-b", "analyse", "write-up", "(synthesis)")
            waited = await c.call_tool("wait_run", {"run_id": started.run_id})
        assert not waited.is_error, text_of(waited)
        out = OrchestrateResult.model_validate(waited.structured_content)
        requests_before_restart = len(fake.message_requests)
        async with Client(create_server(settings)) as c:  # a new server process on the same database
            stored = await c.call_tool("wait_run", {"run_id": started.run_id})
            synthesis = await c.call_tool("synthesize", {"run_id": started.run_id})

    assert out.report.run_id == started.run_id
    assert out.synthesis is not None
    assert out.total.usage == fake.billed_usage  # planner, every subtask and the synthesis
    assert OrchestrateResult.model_validate(stored.structured_content) == out
    assert synthesis.structured_content is not None
    assert synthesis.structured_content["answer"] == out.synthesis.answer
    assert len(fake.message_requests) == requests_before_restart  # nothing was paid for twice


async def test_cancel_run_closes_the_in_flight_requests_and_stores_the_run_cancelled(executor: Executor) -> None:
    gates = Gates(hold={"a", "b"})
    async with (
        serve_fake_anthropic(gates, api_key=KEY) as fake,
        executor.serving(settings_for(fake)) as settings,
        Client(create_server(settings)) as c,
    ):
        handle = handle_of(await c.call_tool("execute_plan", {"plan": plan("a", "b", "c"), "wait_s": 0}))
        await gates.arrived["a"].wait()
        await gates.arrived["b"].wait()
        cancelled = await c.call_tool("cancel_run", {"run_id": handle.run_id})
        with anyio.fail_after(10):
            await fake.wait_abandoned(2)
        listed = await c.call_tool("list_runs", {})
        again = await c.call_tool("cancel_run", {"run_id": handle.run_id})
    assert not cancelled.is_error, text_of(cancelled)
    report = RunReport.model_validate(cancelled.structured_content)
    assert report.status == "cancelled"
    assert {r.task_id for r in report.results if r.status == "cancelled"} >= {"a", "b"}
    assert sorted(task_of(fake.requests[i]) for i in fake.abandoned) == ["a", "b"]
    assert listed.structured_content is not None
    assert listed.structured_content["runs"][0]["status"] == "cancelled"
    assert again.is_error
    assert "not running in this server: it ended cancelled" in text_of(again)


async def test_a_cancelled_wait_run_leaves_the_run_going() -> None:
    gates = Gates()
    async with serve_fake_anthropic(gates, api_key=KEY) as fake, Client(create_server(settings_for(fake))) as c:
        handle = handle_of(await c.call_tool("execute_plan", {"plan": plan("a"), "wait_s": 0}))
        await gates.arrived["a"].wait()
        with pytest.raises(MCPError):  # the client gives up on this call: the server cancels the wait
            await c.call_tool("wait_run", {"run_id": handle.run_id}, read_timeout_seconds=0.2)
        gates.release("a")
        done = await c.call_tool("wait_run", {"run_id": handle.run_id})
    assert RunReport.model_validate(done.structured_content).status == "succeeded"
    assert [task_of(r) for r in fake.message_requests] == ["a"]


async def test_two_runs_in_one_server_keep_their_own_results_within_one_process_wide_cap(executor: Executor) -> None:
    full = anyio.Event()

    async def at_most_two(request: FakeRequest) -> FakeReply:
        if fake.in_flight >= 2:  # the cap is reached: let everything through from now on
            full.set()
        await full.wait()
        reply = sample_for_schema(request.schema or {})
        reply["summary"] = f"{task_of(request)} done"
        return json_reply(reply)

    async with (
        serve_fake_anthropic(at_most_two, api_key=KEY) as fake,
        executor.serving(settings_for(fake, max_concurrency=2)) as settings,  # a worker has the same cap
        Client(create_server(settings)) as c,
    ):
        runs = [
            handle_of(await c.call_tool("execute_plan", {"plan": plan(*ids), "max_concurrency": 3, "wait_s": 0}))
            for ids in (("x1", "x2", "x3"), ("y1", "y2", "y3"))
        ]
        reports = [await c.call_tool("wait_run", {"run_id": h.run_id}) for h in runs]
    x, y = (RunReport.model_validate(r.structured_content) for r in reports)
    assert (x.status, y.status) == ("succeeded", "succeeded")
    assert [r.output["summary"] for r in x.results if r.output] == ["x1 done", "x2 done", "x3 done"]
    assert [r.output["summary"] for r in y.results if r.output] == ["y1 done", "y2 done", "y3 done"]
    assert fake.max_in_flight == 2  # six subtasks ready at once, two model calls at a time


async def test_bad_wait_s_and_unknown_runs_get_clear_errors_and_cost_nothing() -> None:
    async with serve_fake_anthropic(Gates(), api_key=KEY) as fake, Client(create_server(settings_for(fake))) as c:
        negative = await c.call_tool("execute_plan", {"plan": plan("a"), "wait_s": -1})
        ghost = await c.call_tool("wait_run", {"run_id": "run-ghost"})
        cancel_ghost = await c.call_tool("cancel_run", {"run_id": "run-ghost"})
    assert negative.is_error
    assert "wait_s must be between 0" in text_of(negative)
    assert ghost.is_error
    assert "no run with id 'run-ghost'" in text_of(ghost)
    assert cancel_ghost.is_error
    assert fake.message_requests == []


def test_the_default_wait_answers_before_every_hosts_cut_off() -> None:
    assert 0 < Settings().tool_wait_s <= 45  # Claude Desktop and the Inspector cut calls off at 60 s
    assert Settings.from_env({"SUBAGENT_MCP_TOOL_WAIT_S": "5"}, env_file=None).tool_wait_s == 5


async def test_a_waiting_call_hears_that_planning_started_and_a_heartbeat_while_the_planner_thinks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(background, "HEARTBEAT_S", 0.01)  # hosts drop calls silent for minutes; here, moments
    gates = Gates()
    heard: list[str] = []
    beats = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        heard.append(message or "")
        if heard.count("planning") >= 3:  # the start of planning, then at least two heartbeats
            beats.set()
            gates.release("(planner)", "research-a", "research-b", "analyse", "write-up", "(synthesis)")

    async with serve_fake_anthropic(gates, api_key=KEY) as fake, Client(create_server(settings_for(fake))) as c:
        result = await c.call_tool("orchestrate", {"task": "Pick a database"}, progress_callback=on_progress)
    assert beats.is_set()
    assert not result.is_error, text_of(result)
    assert heard[0] == "planning"
    assert any(m.endswith("synthesizing") for m in heard)
    assert heard[-1] == "synthesized"


async def test_a_caller_that_stops_reading_progress_never_holds_the_run_up(tmp_path: Path) -> None:
    """Progress is queued per waiting caller and told in its own task: a stuck caller delays only itself."""
    stuck_forever = anyio.Event()

    async def stuck(done: int, total: int | None, message: str, level: str) -> None:
        await stuck_forever.wait()  # a client whose notifications never drain

    settings = Settings.from_env({}, env_file=None, db_path=str(tmp_path / "runs.db"))
    async with Service.open(settings, ScriptedBackend()) as service, anyio.create_task_group() as tg:
        live = await service.start_execute(Plan.model_validate(plan("a", "b", "c", deps={"c": ["a"]})))
        tg.start_soon(service.runs.wait, live, math.inf, stuck)
        with anyio.fail_after(30):
            outcome = await service.finish(live)
        stored = await service.store.get_run(live.run_id)
        assert RunReport.model_validate(outcome.model_dump()).status == "succeeded"
        assert stored is not None
        assert stored.status == "succeeded"  # every result committed, though the caller never read a step
        tg.cancel_scope.cancel()  # the stuck caller is still waiting; the run is long done
