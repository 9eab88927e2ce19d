"""A background run's lifecycle at its edges: cancelling an orchestration, waiting on a stopped run, two resumes,
a run stopped by a bug, and a resumed orchestration's result in the server that resumed it and in a fresh one.

Through a real in-memory MCP client and the real Anthropic backend on the fake Messages API, whose replies are
held until the test lets them go (``run_gates.Gates``); its request log is the evidence of what was sent.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError
from pydantic import SecretStr

from run_gates import Gates, handle_of, plan, task_of
from subagent_mcp.backends.anthropic import AnthropicBackend
from subagent_mcp.backends.scripted import ScriptedBackend
from subagent_mcp.background import LiveRun
from subagent_mcp.contracts import Completion, CompletionRequest, OrchestrateResult, RunReport
from subagent_mcp.errors import InputError
from subagent_mcp.mcp_server import create_server
from subagent_mcp.service import Service
from subagent_mcp.settings import Settings
from subagent_mcp.testing import FakeAnthropic, serve_fake_anthropic
from subagent_mcp.testing.results import text_of

pytestmark = pytest.mark.anyio

KEY = "sk-ant-test-run-lifecycle"
DEMO_SUBTASKS = ("research-a", "research-b", "analyse", "write-up")
"""The subtasks of the plan the gated planner returns (``demo_plan_draft``)."""


def settings_for(fake: FakeAnthropic, location: str) -> Settings:
    where: dict[str, Any] = {"db_url": SecretStr(location)} if location.startswith("postgresql") else {}
    where = where or {"db_path": location}
    return Settings(anthropic_api_key=SecretStr(KEY), anthropic_base_url=fake.base_url, retry_max_wait_s=0, **where)


async def test_cancel_run_on_an_orchestration_past_planning_returns_its_stored_result(tmp_path: Path) -> None:
    gates = Gates(hold={"research-a", "research-b"})
    async with (
        serve_fake_anthropic(gates, api_key=KEY) as fake,
        Client(create_server(settings_for(fake, str(tmp_path / "runs.db")))) as c,
    ):
        started = handle_of(await c.call_tool("orchestrate", {"task": "Pick a database", "wait_s": 0}))
        gates.release("(planner)")
        await gates.arrived["research-a"].wait()
        await gates.arrived["research-b"].wait()
        cancelled = await c.call_tool("cancel_run", {"run_id": started.run_id})
        again = await c.call_tool("cancel_run", {"run_id": started.run_id})
    assert not cancelled.is_error, text_of(cancelled)
    out = OrchestrateResult.model_validate(cancelled.structured_content)
    assert (out.report.run_id, out.report.status) == (started.run_id, "cancelled")
    assert {r.task_id: r.status for r in out.report.results} == dict.fromkeys(DEMO_SUBTASKS, "cancelled")
    assert out.synthesis is None
    assert "(synthesis)" not in [task_of(r) for r in fake.message_requests]
    assert "not running in this server: it ended cancelled" in text_of(again)


async def test_wait_run_right_after_cancel_run_returns_the_stored_report_not_a_stale_handle(tmp_path: Path) -> None:
    gates = Gates(hold={"a", "b"})
    four = plan("a", "b", "c", "d", deps={"c": ["a"], "d": ["b"]})
    async with (
        serve_fake_anthropic(gates, api_key=KEY) as fake,
        Client(create_server(settings_for(fake, str(tmp_path / "runs.db")))) as c,
    ):
        started = handle_of(await c.call_tool("execute_plan", {"plan": four, "wait_s": 0}))
        await gates.arrived["a"].wait()
        await gates.arrived["b"].wait()
        cancelled = await c.call_tool("cancel_run", {"run_id": started.run_id})
        waited = await c.call_tool("wait_run", {"run_id": started.run_id, "wait_s": 0})
    report = RunReport.model_validate(cancelled.structured_content)
    assert [r.status for r in report.results] == ["cancelled"] * 4
    assert not waited.is_error, text_of(waited)
    assert RunReport.model_validate(waited.structured_content) == report
    assert "running" not in text_of(waited)


async def test_a_run_cancelled_while_planning_says_so_and_to_orchestrate_again_wherever_its_id_is_used(
    tmp_path: Path,
) -> None:
    gates = Gates(hold={"(planner)"})
    async with (
        serve_fake_anthropic(gates, api_key=KEY) as fake,
        Client(create_server(settings_for(fake, str(tmp_path / "runs.db")))) as c,
    ):
        started = handle_of(await c.call_tool("orchestrate", {"task": "Pick a database", "wait_s": 0}))
        await gates.arrived["(planner)"].wait()
        cancelled = await c.call_tool("cancel_run", {"run_id": started.run_id})
        waited = await c.call_tool("wait_run", {"run_id": started.run_id, "wait_s": 0})
        refusals = [await c.call_tool(tool, {"run_id": started.run_id}) for tool in ("resume_run", "synthesize")]
        with pytest.raises(MCPError) as read:
            await c.read_resource(f"subagent://runs/{started.run_id}")
    assert handle_of(cancelled).status == handle_of(waited).status == "cancelled"
    said = "it was cancelled while planning; nothing ran, so there is nothing to resume or synthesize. "
    said += "Call orchestrate again to start it anew."
    assert handle_of(cancelled).next == handle_of(waited).next == said
    for refused in refusals:
        assert refused.is_error
        assert text_of(refused).split(": ", 1)[1] == f"run {started.run_id!r}: {said}"  # after the SDK's prefix
        assert str(tmp_path) not in text_of(refused)
    assert said in str(read.value)
    assert [task_of(r) for r in fake.message_requests] == ["(planner)"]


async def test_an_unknown_run_id_of_any_length_is_echoed_at_most_one_hundred_characters_long() -> None:
    long_id = "run-" + "x" * 10_000
    async with (
        serve_fake_anthropic(Gates(), api_key=KEY) as fake,
        Client(create_server(settings_for(fake, ":memory:"))) as c,
    ):
        answers = [await c.call_tool(tool, {"run_id": long_id}) for tool in ("wait_run", "resume_run")]
    for answer in answers:
        assert answer.is_error
        assert f"no run with id {long_id[:100] + '…'!r} is stored" in text_of(answer)
        assert len(text_of(answer)) < 300


async def test_two_resumes_at_once_run_the_run_once_and_the_second_is_told_it_is_still_running(
    db_location: str,
) -> None:
    gates = Gates(hold={"a", "b"})
    async with (
        serve_fake_anthropic(gates, api_key=KEY) as fake,
        Client(create_server(settings_for(fake, db_location))) as c,
    ):
        run_id = handle_of(await c.call_tool("execute_plan", {"plan": plan("a", "b"), "wait_s": 0})).run_id
        await gates.arrived["a"].wait()
        await gates.arrived["b"].wait()
        assert not (await c.call_tool("cancel_run", {"run_id": run_id})).is_error
        gates.hold.clear()
        before = len(fake.message_requests)
        answers: list[Any] = []

        async def resume() -> None:
            answers.append(await c.call_tool("resume_run", {"run_id": run_id, "wait_s": 0}))

        async with anyio.create_task_group() as tg:
            tg.start_soon(resume)
            tg.start_soon(resume)
        refused = [a for a in answers if a.is_error]
        assert len(refused) == 1, [text_of(a) for a in answers]
        gates.release("a", "b")
        done = await c.call_tool("wait_run", {"run_id": run_id})
    assert f"run {run_id!r} is still running in this server; wait_run or cancel_run it first" in text_of(refused[0])
    assert RunReport.model_validate(done.structured_content).status == "succeeded"
    assert sorted(task_of(r) for r in fake.message_requests[before:]) == ["a", "b"]  # each pending subtask once


async def test_a_run_id_whose_run_is_still_live_cannot_be_launched_again(tmp_path: Path) -> None:
    settings = Settings.from_env({}, env_file=None, db_path=str(tmp_path / "runs.db"))
    hold = anyio.Event()

    async def held() -> RunReport:
        await hold.wait()
        raise AssertionError("never let go")

    async with Service.open(settings, ScriptedBackend()) as service:
        first = service.runs.launch(LiveRun("run-once", "resume"), held)
        with pytest.raises(InputError, match="'run-once' is still running in this server"):
            service.runs.launch(LiveRun("run-once", "resume"), held)
        assert service.runs.get("run-once") is first  # the live run is not orphaned
        await service.runs.stop(first)
        again = service.runs.launch(LiveRun("run-once", "resume"), held)  # a run that ended may run again
        assert service.runs.get("run-once") is again
        await service.runs.stop(again)


async def test_a_run_stopped_by_its_own_timeout_s_is_reported_timed_out_not_cancelled(tmp_path: Path) -> None:
    gates = Gates(hold={"a"})  # a never answers; b waits for it
    async with (
        serve_fake_anthropic(gates, api_key=KEY) as fake,
        Client(create_server(settings_for(fake, str(tmp_path / "runs.db")))) as c,
    ):
        ran = await c.call_tool("execute_plan", {"plan": plan("a", "b", deps={"b": ["a"]}), "timeout_s": 1})
        listed = await c.call_tool("list_runs", {})
    report = RunReport.model_validate(ran.structured_content)
    assert report.status == "failed"
    assert [r.status for r in report.results] == ["failed", "skipped"]  # a cut short in flight, b never started
    assert all("the run's timeout_s (1 s) ran out" in (r.error or "") for r in report.results)
    assert listed.structured_content is not None
    assert listed.structured_content["runs"][0]["status"] == "failed"


class Unprintable(RuntimeError):
    """An error that cannot be put into words: reading its message raises (a bug, with the key in its text)."""

    def __str__(self) -> str:
        raise AssertionError(f"a bug while describing an error, holding {KEY}")


class BrokenOn(AnthropicBackend):
    """The real backend, except that a call for subtask ``task`` raises ``Unprintable``, which the executor's
    per-subtask handling cannot describe, so it escapes the executor: a bug that stops the whole run."""

    def __init__(self, settings: Settings, task: str) -> None:
        super().__init__(settings)
        self.task = task

    async def complete(self, request: CompletionRequest) -> Completion:
        if request.label == self.task:
            raise Unprintable()
        return await super().complete(request)


async def test_a_run_stopped_by_a_bug_ends_failed_with_the_error_keeps_what_finished_and_resumes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="subagent_mcp")
    gates = Gates(hold={"c"})  # c is in flight when b's bug stops the run; d waits for c
    four = plan("a", "b", "c", "d", deps={"b": ["a"], "d": ["c"]})
    async with serve_fake_anthropic(gates, api_key=KEY) as fake:
        settings = settings_for(fake, str(tmp_path / "runs.db"))
        async with Client(create_server(settings, BrokenOn(settings, "b"))) as c:
            run_id = handle_of(await c.call_tool("execute_plan", {"plan": four, "wait_s": 0})).run_id
            await gates.arrived["c"].wait()
            gates.release("a")  # a succeeds, then b starts and hits the bug
            waited = await c.call_tool("wait_run", {"run_id": run_id})
        gates.hold.clear()
        gates.release("b", "c", "d")
        before = len(fake.message_requests)
        async with Client(create_server(settings)) as c:  # a fresh server on the same database, without the bug
            stored = await c.call_tool("wait_run", {"run_id": run_id})
            listed = await c.call_tool("list_runs", {})
            resumed = await c.call_tool("resume_run", {"run_id": run_id})
    assert not waited.is_error, text_of(waited)
    report = RunReport.model_validate(waited.structured_content)
    assert report.status == "failed"  # nobody cancelled it
    assert {r.task_id: r.status for r in report.results} == {
        "a": "succeeded", "b": "failed", "c": "failed", "d": "skipped",
    }  # fmt: skip
    assert report.error is not None
    assert report.error.startswith("an internal error stopped the run (AssertionError: a bug while describing an error")
    assert f"resume_run(run_id={run_id!r})" in report.error
    assert "an internal error stopped the run" in text_of(waited)
    for shown in (text_of(waited), json.dumps(waited.structured_content), text_of(stored)):
        assert KEY not in shown
    assert "[redacted]" in report.error
    (logged,) = [r for r in caplog.records if "internal error" in r.getMessage()]
    assert run_id in logged.getMessage()
    assert "Traceback" in caplog.text  # the server's log has the traceback, the key redacted there too
    assert KEY not in caplog.text
    assert RunReport.model_validate(stored.structured_content) == report  # the same from the store
    assert listed.structured_content is not None
    assert listed.structured_content["runs"][0]["status"] == "failed"
    assert RunReport.model_validate(resumed.structured_content).status == "succeeded"
    assert sorted(task_of(r) for r in fake.message_requests[before:]) == ["b", "c", "d"]  # a was kept


async def interrupted_orchestration(settings: Settings, gates: Gates) -> str:
    """An orchestration whose server shut down with "analyse" in flight (stored interrupted); its run id."""
    async with Client(create_server(settings)) as c:
        run_id = handle_of(await c.call_tool("orchestrate", {"task": "Pick a database", "wait_s": 0})).run_id
        gates.release("(planner)", "research-a", "research-b")
        await gates.arrived["analyse"].wait()
    return run_id


async def test_a_resumed_orchestration_returns_its_synthesis_in_the_server_that_resumed_it_and_in_a_fresh_one(
    tmp_path: Path,
) -> None:
    gates = Gates(hold={"analyse"})
    async with serve_fake_anthropic(gates, api_key=KEY) as fake:
        settings = settings_for(fake, str(tmp_path / "runs.db"))
        run_id = await interrupted_orchestration(settings, gates)
        gates.hold.clear()
        async with Client(create_server(settings)) as c:
            handle_of(await c.call_tool("resume_run", {"run_id": run_id, "wait_s": 0}))
            gates.release("analyse", "write-up", "(synthesis)")
            same = await c.call_tool("wait_run", {"run_id": run_id})
        async with Client(create_server(settings)) as c:
            fresh = await c.call_tool("wait_run", {"run_id": run_id})
    assert not same.is_error, text_of(same)
    out = OrchestrateResult.model_validate(same.structured_content)
    assert out.report.status == "succeeded"
    assert out.synthesis is not None
    assert out.total.usage == fake.billed_usage  # planning, every subtask attempt of both servers, the synthesis
    assert OrchestrateResult.model_validate(fresh.structured_content) == out
    assert [task_of(r) for r in fake.message_requests].count("(synthesis)") == 1  # the fresh server paid nothing


async def test_resume_run_and_cancel_run_of_a_resumed_orchestration_answer_in_orchestrates_shape(
    tmp_path: Path,
) -> None:
    gates = Gates(hold={"analyse"})
    async with serve_fake_anthropic(gates, api_key=KEY) as fake:
        settings = settings_for(fake, str(tmp_path / "runs.db"))
        run_id = await interrupted_orchestration(settings, gates)
        async with Client(create_server(settings)) as c:
            gates.arrived["analyse"] = anyio.Event()
            handle_of(await c.call_tool("resume_run", {"run_id": run_id, "wait_s": 0}))
            await gates.arrived["analyse"].wait()
            cancelled = await c.call_tool("cancel_run", {"run_id": run_id})
            gates.hold.clear()
            gates.release("analyse", "write-up", "(synthesis)")
            resumed = await c.call_tool("resume_run", {"run_id": run_id})
    assert not cancelled.is_error, text_of(cancelled)
    stopped = OrchestrateResult.model_validate(cancelled.structured_content)
    assert (stopped.report.status, stopped.synthesis) == ("cancelled", None)
    assert not resumed.is_error, text_of(resumed)
    out = OrchestrateResult.model_validate(resumed.structured_content)
    assert (out.report.status, out.synthesis is not None) == ("succeeded", True)
    assert out.total.usage == fake.billed_usage


async def test_resuming_a_finished_orchestration_returns_its_stored_synthesis_without_paying_again(
    tmp_path: Path,
) -> None:
    gates = Gates()
    gates.release("(planner)", *DEMO_SUBTASKS, "(synthesis)")
    async with serve_fake_anthropic(gates, api_key=KEY) as fake:
        settings = settings_for(fake, str(tmp_path / "runs.db"))
        async with Client(create_server(settings)) as c:
            done = OrchestrateResult.model_validate(
                (await c.call_tool("orchestrate", {"task": "Pick a db"})).structured_content
            )
            sent = len(fake.message_requests)
            resumed = await c.call_tool("resume_run", {"run_id": done.report.run_id})
            listed = (await c.call_tool("list_runs", {})).structured_content
        async with Client(create_server(settings)) as c:
            fresh = await c.call_tool("wait_run", {"run_id": done.report.run_id})
    assert not resumed.is_error, text_of(resumed)
    again = OrchestrateResult.model_validate(resumed.structured_content)
    assert len(fake.message_requests) == sent  # nothing was left to run: no subtask, no second synthesis
    assert again.synthesis == done.synthesis
    assert again.total == done.total
    assert listed is not None
    assert listed["runs"][0]["total_cost_usd"] == round(done.total.cost_usd, 8)
    assert OrchestrateResult.model_validate(fresh.structured_content).synthesis == done.synthesis  # still current
