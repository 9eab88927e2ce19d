"""execute_plan, synthesize and orchestrate through a real in-memory MCP client."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from mcp import Client

from executors import Executor
from subagent_mcp.backends.scripted import ScriptedBackend, sample_for_schema
from subagent_mcp.contracts import CompletionRequest, JsonObject, OrchestrateResult, RunReport, Synthesis
from subagent_mcp.demo import demo_reply
from subagent_mcp.errors import ModelRequestError
from subagent_mcp.mcp_server import create_server
from subagent_mcp.prompts import subtask_id_of
from subagent_mcp.settings import Settings
from subagent_mcp.testing.results import text_of

pytestmark = pytest.mark.anyio


def server(backend: ScriptedBackend, **overrides: Any) -> Any:
    return create_server(Settings.from_env({}, env_file=None, **overrides), backend)


@asynccontextmanager
async def client_on(executor: Executor, backend: ScriptedBackend, **overrides: Any) -> AsyncGenerator[Client]:
    """A client of a server whose runs execute on ``executor`` (on Temporal, a worker calls ``backend``)."""
    async with (
        executor.serving(Settings.from_env({}, env_file=None, **overrides), backend) as settings,
        Client(create_server(settings, backend)) as c,
    ):
        yield c


def subtask(task_id: str, *deps: str, role: str = "writer") -> JsonObject:
    return {"id": task_id, "role": role, "instructions": f"do {task_id}", "depends_on": list(deps)}


def inline_plan(*subtasks: JsonObject) -> JsonObject:
    return {"plan_id": "p-inline", "task": "Write a short report", "summary": "", "subtasks": list(subtasks)}


def task_id_of(request: CompletionRequest) -> str:
    return subtask_id_of(request.messages[0].content)


async def test_an_inline_plan_runs_and_reports_every_task_with_offsets_and_totals(executor: Executor) -> None:
    backend = ScriptedBackend()
    plan = inline_plan(subtask("a"), subtask("b"), subtask("c", "a", "b"))
    async with client_on(executor, backend) as c:
        result = await c.call_tool("execute_plan", {"plan": plan})
    assert not result.is_error, text_of(result)
    report = RunReport.model_validate(result.structured_content)
    assert report.status == "succeeded"
    assert [r.task_id for r in report.results] == ["a", "b", "c"]
    assert all(r.started_at_s is not None and r.finished_at_s is not None for r in report.results)
    assert report.usage.input_tokens == sum(r.usage.input_tokens for r in report.results) > 0
    c_request = next(r for r in backend.seen if task_id_of(r) == "c")
    assert '"task_id":"a"' in c_request.messages[0].content
    assert '"task_id":"b"' in c_request.messages[0].content
    assert "SUCCEEDED" in text_of(result)
    assert f"synthesize(run_id={report.run_id!r})" in text_of(result)  # the next step


async def test_with_one_slot_the_subtask_expected_to_write_the_most_goes_first(executor: Executor) -> None:
    backend = ScriptedBackend()
    brief = {**subtask("brief"), "expected_output_tokens": 100}
    report = {**subtask("report"), "expected_output_tokens": 3000}  # listed last, yet the longest call
    async with client_on(executor, backend) as c:
        result = await c.call_tool("execute_plan", {"plan": inline_plan(brief, report), "max_concurrency": 1})
    assert not result.is_error, text_of(result)
    assert [task_id_of(r) for r in backend.seen] == ["report", "brief"]


async def test_a_failure_skips_its_dependents_and_says_so_while_independent_work_finishes(executor: Executor) -> None:
    def reply(request: CompletionRequest) -> JsonObject:
        if task_id_of(request) == "fetch":
            raise ModelRequestError("Anthropic API rejected the request (400 invalid_request_error): nope")
        return sample_for_schema(request.output_schema)

    plan = inline_plan(subtask("fetch"), subtask("use", "fetch"), subtask("other"))
    async with client_on(executor, ScriptedBackend(reply)) as c:
        result = await c.call_tool("execute_plan", {"plan": plan})
    report = RunReport.model_validate(result.structured_content)
    statuses = {r.task_id: r.status for r in report.results}
    assert (report.status, statuses) == ("partial", {"fetch": "failed", "use": "skipped", "other": "succeeded"})
    skipped = next(r for r in report.results if r.task_id == "use")
    assert skipped.error == "depends on 'fetch', which failed"
    assert "400 invalid_request_error" in text_of(result)
    assert "- use [writer] skipped: depends on 'fetch', which failed" in text_of(result).splitlines()


async def test_progress_notifications_arrive_for_every_task_and_only_rise(executor: Executor) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    plan = inline_plan(subtask("a"), subtask("b", "a"), subtask("c", "a"))
    async with client_on(executor, ScriptedBackend()) as c:
        await c.call_tool("execute_plan", {"plan": plan}, progress_callback=on_progress)
    values = [p for p, _, _ in seen]
    assert values == sorted(values)
    assert values[-1] == 3
    assert {total for _, total, _ in seen} == {3}
    messages = [m or "" for _, _, m in seen]
    assert any(m.startswith("b succeeded") for m in messages)
    assert messages[-1] == "run succeeded (3/3 done)"


async def test_an_invalid_inline_plan_is_refused_before_any_model_call() -> None:
    backend = ScriptedBackend()
    cyclic = inline_plan(subtask("a", "b"), subtask("b", "a"))
    unknown_role = inline_plan(subtask("a", role="wizard"))
    async with Client(server(backend)) as c:
        cycle = await c.call_tool("execute_plan", {"plan": cyclic})
        role = await c.call_tool("execute_plan", {"plan": unknown_role})
        neither = await c.call_tool("execute_plan", {})
        ghost = await c.call_tool("execute_plan", {"plan_id": "plan-ghost"})
    assert cycle.is_error
    assert "dependency cycle" in text_of(cycle)
    assert role.is_error
    assert "unknown roles in subtasks: a (role 'wizard')" in text_of(role)
    assert neither.is_error
    assert "pass exactly one of plan" in text_of(neither)
    assert ghost.is_error
    assert "no plan with id 'plan-ghost'" in text_of(ghost)
    assert backend.seen == []


async def test_a_dependency_repeated_ten_thousand_times_is_refused_before_it_can_bloat_a_prompt() -> None:
    backend = ScriptedBackend()
    plan = inline_plan(subtask("a"), subtask("b", *["a"] * 10_000))
    async with Client(server(backend)) as c:
        result = await c.call_tool("execute_plan", {"plan": plan})
    assert result.is_error
    assert "subtask b lists 'a' 10,000 times in depends_on" in text_of(result)
    assert backend.seen == []


async def test_a_ten_thousand_subtask_cycle_is_refused_in_a_short_error() -> None:
    n = 10_000
    cyclic = inline_plan(*(subtask(f"n{i}", f"n{(i + 1) % n}") for i in range(n)))
    async with Client(server(ScriptedBackend())) as c:
        result = await c.call_tool("execute_plan", {"plan": cyclic})
    assert result.is_error
    assert "dependency cycle: n0 -> n1 -> " in text_of(result)
    assert "and 9,981 more" in text_of(result)
    assert len(text_of(result)) < 2_000


async def test_unknown_roles_in_a_large_plan_are_listed_up_to_twenty() -> None:
    wizards = inline_plan(*(subtask(f"s{i}", role="wizard") for i in range(50)))
    async with Client(server(ScriptedBackend(), max_subtasks=100)) as c:
        result = await c.call_tool("execute_plan", {"plan": wizards})
    assert result.is_error
    assert "s19 (role 'wizard') and 30 more; available roles:" in text_of(result)


async def test_a_plan_from_plan_task_runs_by_id_and_its_run_synthesizes_by_id() -> None:
    backend = ScriptedBackend(demo_reply)
    async with Client(server(backend)) as c:
        planned = await c.call_tool("plan_task", {"task": "Compare two databases"})
        assert planned.structured_content is not None
        run = await c.call_tool("execute_plan", {"plan_id": planned.structured_content["plan_id"]})
        assert run.structured_content is not None
        synthesis = await c.call_tool("synthesize", {"run_id": run.structured_content["run_id"]})
    assert not synthesis.is_error, text_of(synthesis)
    answer = Synthesis.model_validate(synthesis.structured_content)
    assert answer.complete
    assert answer.missing == []
    assert backend.seen[-1].label == "synthesis"
    assert backend.seen[-1].model == Settings().synthesis_model


async def test_a_subtask_expected_to_write_more_than_max_tokens_is_refused_before_any_call() -> None:
    backend = ScriptedBackend()
    huge = {**subtask("report"), "expected_output_tokens": 100_000}
    async with Client(server(backend, max_output_tokens=4_096)) as c:
        result = await c.call_tool("execute_plan", {"plan": inline_plan(subtask("brief"), huge)})
    assert result.is_error
    assert "report (~100,000)" in text_of(result)
    assert "SUBAGENT_MCP_MAX_OUTPUT_TOKENS" in text_of(result)
    assert backend.seen == []


async def test_a_plan_sent_back_as_returned_runs_under_its_own_id_and_an_edited_one_under_a_new_id() -> None:
    backend = ScriptedBackend(demo_reply)
    async with Client(server(backend)) as c:
        planned = await c.call_tool("plan_task", {"task": "Compare two databases"})
        plan = planned.structured_content
        assert plan is not None
        assert plan["estimate"] is not None  # what plan_task adds for review is ignored when it runs
        assert plan["planning"] is not None
        same = await c.call_tool("execute_plan", {"plan": plan})
        edited = {**plan, "subtasks": plan["subtasks"][:2]}
        changed = await c.call_tool("execute_plan", {"plan": edited})
    assert RunReport.model_validate(same.structured_content).plan_id == plan["plan_id"]
    edited_id = RunReport.model_validate(changed.structured_content).plan_id
    assert edited_id != plan["plan_id"]
    assert edited_id.startswith(plan["plan_id"])


async def test_synthesis_states_plainly_what_failed_or_was_skipped() -> None:
    def reply(request: CompletionRequest) -> JsonObject:
        if request.label == "fetch":
            raise ModelRequestError("rate limited (429) on all 4 attempts")
        return sample_for_schema(request.output_schema)

    plan = inline_plan(subtask("fetch"), subtask("use", "fetch"), subtask("other"))
    async with Client(server(ScriptedBackend(reply))) as c:
        run = await c.call_tool("execute_plan", {"plan": plan})
        assert run.structured_content is not None
        result = await c.call_tool("synthesize", {"run_id": run.structured_content["run_id"]})
    synthesis = Synthesis.model_validate(result.structured_content)
    assert not synthesis.complete
    assert synthesis.missing == [
        "fetch (writer) failed: rate limited (429) on all 4 attempts",
        "use (writer) skipped: depends on 'fetch', which failed",
    ]
    assert text_of(result).startswith("INCOMPLETE")


async def test_orchestrate_plans_runs_and_synthesizes_with_progress_to_the_end(executor: Executor) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    backend = ScriptedBackend(demo_reply)
    async with client_on(executor, backend) as c:
        result = await c.call_tool("orchestrate", {"task": "Pick a database"}, progress_callback=on_progress)
    assert not result.is_error, text_of(result)
    out = OrchestrateResult.model_validate(result.structured_content)
    assert out.report.status == "succeeded"
    assert out.synthesis is not None
    assert out.synthesis.complete
    assert next(r.label for r in backend.seen) == "plan"
    assert [r.label for r in backend.seen][-1] == "synthesis"
    assert seen == sorted(seen)
    assert seen[-1] == len(out.plan.subtasks) + 2
    assert "synthesize(run_id=" not in text_of(result)  # no advice to do again what was just done


async def test_cancelling_an_in_flight_execute_plan_cancels_the_model_calls_and_the_server_keeps_serving() -> None:
    in_flight = 0
    both_started = anyio.Event()
    cancelled: list[str] = []

    async def hold(request: CompletionRequest) -> JsonObject:
        nonlocal in_flight
        if request.label == "subagent":  # the follow-up call after the cancellation
            return sample_for_schema(request.output_schema)
        in_flight += 1
        if in_flight == 2:
            both_started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(request.label)
            raise
        raise AssertionError("unreachable")

    plan = inline_plan(subtask("a"), subtask("b"), subtask("c", "a"))
    async with Client(server(ScriptedBackend(hold))) as c:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(c.call_tool, "execute_plan", {"plan": plan})
                await both_started.wait()
                tg.cancel_scope.cancel()
        assert sorted(cancelled) == ["a", "b"]
        with anyio.fail_after(5):
            follow_up = await c.call_tool("run_subagent", {"role": "writer", "instructions": "still there?"})
    assert not follow_up.is_error, text_of(follow_up)


async def test_clients_that_ask_for_logs_get_a_log_line_per_task_event() -> None:
    lines: list[str] = []

    async def on_log(params: Any) -> None:
        lines.append(str(params.data))

    plan = inline_plan(subtask("a"), subtask("b", "a"))
    async with Client(server(ScriptedBackend()), logging_callback=on_log, log_level="info") as c:
        await c.call_tool("execute_plan", {"plan": plan})
    assert "started a (0/2 done, 1 running)" in lines
    assert any(line.startswith("b succeeded") for line in lines)


async def test_model_calling_tools_are_annotated_as_open_world_and_not_read_only() -> None:
    async with Client(server(ScriptedBackend())) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
    for name in ("plan_task", "run_subagent", "execute_plan", "synthesize", "orchestrate", "resume_run"):
        annotations = tools[name].annotations
        assert annotations is not None
        assert annotations.read_only_hint is False
        assert annotations.open_world_hint is True
    list_runs = tools["list_runs"].annotations
    assert list_runs is not None
    assert list_runs.read_only_hint is True


async def test_a_handshake_era_client_gets_the_same_run_with_progress_and_logs() -> None:
    """Hosts on the 2025 protocol (initialize handshake) see the same results, progress and logs."""
    seen: list[float] = []
    logs: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async def on_log(params: Any) -> None:
        logs.append(str(params.data))

    plan = inline_plan(subtask("a"), subtask("b", "a"))
    async with Client(server(ScriptedBackend(demo_reply)), mode="legacy", logging_callback=on_log) as c:
        version = c.protocol_version
        result = await c.call_tool("orchestrate", {"task": "t"}, progress_callback=on_progress)
        run = await c.call_tool("execute_plan", {"plan": plan})
    assert version == "2025-11-25"
    assert not result.is_error, text_of(result)
    assert seen == sorted(seen)
    assert seen
    assert RunReport.model_validate(run.structured_content).status == "succeeded"
    assert any(line.startswith("b succeeded") for line in logs)


async def test_a_hand_made_plan_larger_than_the_planner_may_make_runs_by_default() -> None:
    plan = inline_plan(*(subtask(f"s{i}") for i in range(30)))
    backend = ScriptedBackend()
    async with Client(server(backend)) as c:
        result = await c.call_tool("execute_plan", {"plan": plan})
    assert not result.is_error, text_of(result)
    assert RunReport.model_validate(result.structured_content).status == "succeeded"
    assert len(backend.seen) == 30


async def test_a_plan_over_the_plan_size_setting_is_refused_by_name_before_any_call() -> None:
    plan = inline_plan(*(subtask(f"s{i}") for i in range(6)))
    backend = ScriptedBackend()
    async with Client(server(backend, max_subtasks=3, max_plan_subtasks=5)) as c:
        result = await c.call_tool("execute_plan", {"plan": plan})
    assert result.is_error
    assert "the plan has 6 subtasks, more than the server's maximum of 5 (SUBAGENT_MCP_MAX_PLAN_SUBTASKS)" in text_of(
        result
    )
    assert backend.seen == []


async def test_run_tools_publish_their_wait_limit_and_ceilings_and_warn_that_a_starting_call_owns_its_run() -> None:
    async with Client(server(ScriptedBackend())) as c:
        tools = {t.name: t.input_schema["properties"] for t in (await c.list_tools()).tools}
    for name in ("orchestrate", "execute_plan", "resume_run", "wait_run"):
        assert (tools[name]["wait_s"]["minimum"], tools[name]["wait_s"]["maximum"]) == (0, 86_400)
    for name in ("orchestrate", "execute_plan", "resume_run"):  # the call that starts a run owns it
        said = tools[name]["wait_s"]["description"]
        assert "Keep it under your host's tool-call timeout (Claude Desktop: about 60 s)" in said
        assert "a host that gives up on this call cancels the run it started" in said
        assert "wait_run is safe with any wait_s (it never cancels the run)" in said
    assert "a host that gives up on this call leaves the run running" in tools["wait_run"]["wait_s"]["description"]
    assert (tools["list_runs"]["limit"]["minimum"], tools["list_runs"]["limit"]["maximum"]) == (1, 500)
    assert tools["resume_run"]["max_cost_usd"]["exclusiveMinimum"] == 0
    assert tools["resume_run"]["max_total_tokens"]["minimum"] == 1
