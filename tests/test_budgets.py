"""Budgets stop a run before it could cross its limit, and costs match what the API billed.

These run the real Anthropic backend against the fake Messages API on 127.0.0.1.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from mcp import Client
from pydantic import SecretStr

from budget_setup import PLAN, long_answers, settings_for
from executors import Executor
from subagent_mcp.backends.budgeted import reserved_prompt_tokens
from subagent_mcp.backends.scripted import ScriptedBackend, as_completion, sample_for_schema
from subagent_mcp.contracts import (
    Completion,
    CompletionRequest,
    JsonObject,
    OrchestrateResult,
    Plan,
    RunReport,
    Spend,
    Usage,
)
from subagent_mcp.core.pricing import cost_usd
from subagent_mcp.demo import demo_plan_draft
from subagent_mcp.errors import ModelUnavailableError
from subagent_mcp.mcp_server import create_server
from subagent_mcp.planning import PLANNER_MAX_TOKENS, SYNTHESIS_MAX_TOKENS, estimate_plan
from subagent_mcp.roles import BUILTIN_ROLES
from subagent_mcp.service import Service
from subagent_mcp.settings import Settings
from subagent_mcp.testing import (
    FakeAnthropic,
    FakeReply,
    FakeRequest,
    hang_reply,
    json_reply,
    serve_fake_anthropic,
    text_reply,
)
from subagent_mcp.testing.results import text_of

pytestmark = pytest.mark.anyio


async def test_a_budget_below_the_plans_cost_stops_before_crossing_it_and_sends_nothing_it_refused(
    executor: Executor,
) -> None:
    async with serve_fake_anthropic(long_answers) as fake:
        settings = settings_for(fake)
        worst_one = estimate_plan(Plan.model_validate(PLAN), settings, BUILTIN_ROLES).tasks[0].max_cost_usd
        limit = worst_one * 1.5  # room for one call's worst case, not two
        async with executor.serving(settings) as settings, Client(create_server(settings)) as client:
            result = await client.call_tool("execute_plan", {"plan": PLAN, "max_cost_usd": limit, "max_concurrency": 1})
    report = RunReport.model_validate(result.structured_content)
    statuses = [r.status for r in report.results]
    assert "succeeded" in statuses
    assert "skipped" in statuses
    assert report.status == "partial"
    for r in report.results:
        if r.status == "skipped":
            assert (r.error or "").startswith("budget:")
            assert r.attempts == 0
    assert len(fake.message_requests) == sum(r.attempts for r in report.results)
    assert report.usage == fake.billed_usage
    assert report.cost_usd <= limit
    assert "budget:" in text_of(result)


async def test_subtasks_that_fit_only_after_the_calls_in_flight_wait_for_them_instead_of_being_skipped() -> None:
    wide: JsonObject = {
        "plan_id": "p-wide",
        "task": "Survey a hundred options",
        "subtasks": [
            {"id": f"t{i}", "role": "researcher", "instructions": f"look at option {i}", "depends_on": []}
            for i in range(100)
        ],
    }

    def short_answers(request: FakeRequest) -> FakeReply:  # a hundred of these fit in ten worst cases
        return json_reply(sample_for_schema(request.schema or {}), usage=Usage(input_tokens=100, output_tokens=20))

    async with serve_fake_anthropic(short_answers) as fake:
        settings = settings_for(fake, max_subtasks=100, max_concurrency=1024)
        worst_one = estimate_plan(Plan.model_validate(wide), settings, BUILTIN_ROLES).tasks[0].max_cost_usd
        ceiling = 10 * worst_one  # room for ten worst cases at once, not a hundred
        async with Client(create_server(settings)) as client:
            result = await client.call_tool(
                "execute_plan", {"plan": wide, "max_concurrency": 1024, "max_cost_usd": ceiling}
            )
    report = RunReport.model_validate(result.structured_content)
    assert report.status == "succeeded", [r.error for r in report.results if r.status != "succeeded"][:2]
    assert len(report.results) == 100
    assert report.cost_usd <= ceiling
    assert report.usage == fake.billed_usage
    assert fake.max_in_flight <= 10  # the budget, not the concurrency cap, held the rest back


async def test_the_reports_usage_and_cost_equal_what_the_fake_api_billed() -> None:
    async with serve_fake_anthropic() as fake:
        settings = settings_for(fake)
        async with Client(create_server(settings)) as client:
            result = await client.call_tool("execute_plan", {"plan": PLAN})
    report = RunReport.model_validate(result.structured_content)
    assert report.status == "succeeded"
    assert report.usage == fake.billed_usage
    billed = sum(cost_usd(u, r.model, settings.prices) for u, r in zip(fake.billed, fake.message_requests, strict=True))
    assert report.cost_usd == pytest.approx(billed)
    assert report.estimate is not None
    assert report.estimate.max_cost_usd >= report.estimate.cost_usd > 0


def test_the_estimate_counts_every_subtask_and_the_synthesis_and_the_critical_path() -> None:
    plan = Plan.model_validate(
        {
            "plan_id": "p",
            "task": "t",
            "subtasks": [
                {"id": "a", "role": "researcher", "instructions": "x", "depends_on": []},
                {"id": "b", "role": "coder", "instructions": "y", "depends_on": ["a"]},
                {"id": "c", "role": "writer", "instructions": "z", "depends_on": ["b"]},
                {"id": "d", "role": "writer", "instructions": "w", "depends_on": []},
            ],
        }
    )
    estimate = estimate_plan(plan, Settings(), BUILTIN_ROLES)
    assert [t.task_id for t in estimate.tasks] == ["a", "b", "c", "d"]
    assert estimate.synthesis is not None
    assert estimate.critical_path_subtasks == 3
    by_id = {t.task_id: t for t in estimate.tasks}
    assert by_id["b"].model == Settings().model_for_role("coder", "strong")
    assert by_id["c"].input_tokens > by_id["d"].input_tokens  # c carries b's expected output as context
    assert estimate.cost_usd == pytest.approx(sum(t.cost_usd for t in [*estimate.tasks, estimate.synthesis]), abs=1e-6)


def test_a_subtasks_worst_case_prices_its_dependencies_at_their_max_tokens() -> None:
    plan = Plan.model_validate(
        {
            "plan_id": "p",
            "task": "t",
            "subtasks": [
                {"id": "a", "role": "researcher", "instructions": "x", "depends_on": []},
                {"id": "b", "role": "writer", "instructions": "y", "depends_on": ["a"]},
            ],
        }
    )
    # no server tools: what a researcher's searches and fetches may add is test_server_tools' to check
    settings = Settings(max_output_tokens=4_000, context_budget_tokens=100_000, server_tools=False)
    a, b = estimate_plan(plan, settings, BUILTIN_ROLES).tasks
    assert a.max_input_tokens == a.input_tokens  # no dependencies: nothing to run long
    assert b.max_input_tokens - b.input_tokens == a.max_output_tokens - a.output_tokens
    assert b.max_cost_usd > b.cost_usd


def test_a_subtasks_expected_output_tokens_replace_its_roles_typical_length_up_to_max_tokens() -> None:
    def plan_with(hint: int | None) -> Plan:
        subtasks: list[JsonObject] = [
            {"id": "a", "role": "writer", "instructions": "x", "depends_on": [], "expected_output_tokens": hint},
            {"id": "b", "role": "writer", "instructions": "y", "depends_on": ["a"]},
        ]
        return Plan.model_validate({"plan_id": "p", "task": "t", "subtasks": subtasks})

    settings = Settings(max_output_tokens=4_000, context_budget_tokens=100_000)
    typical = BUILTIN_ROLES["writer"].expected_output_tokens
    assert estimate_plan(plan_with(None), settings, BUILTIN_ROLES).tasks[0].output_tokens == typical
    a, b = estimate_plan(plan_with(3_000), settings, BUILTIN_ROLES).tasks
    assert a.output_tokens == 3_000
    assert (
        b.input_tokens
        == estimate_plan(plan_with(None), settings, BUILTIN_ROLES).tasks[1].input_tokens + 3_000 - typical
    )
    assert estimate_plan(plan_with(50_000), settings, BUILTIN_ROLES).tasks[0].output_tokens == 4_000  # the call's cap


async def test_a_billed_attempt_stays_on_record_when_its_task_is_cancelled_during_the_repair_turn() -> None:
    repair_sent = anyio.Event()

    def reply(request: FakeRequest) -> FakeReply:
        if len(request.body["messages"]) > 1:  # the repair turn: hold it until the host gives up
            repair_sent.set()
            return hang_reply()
        return text_reply("not json", usage=Usage(input_tokens=500, output_tokens=300))

    one: JsonObject = {**PLAN, "plan_id": "p-one", "subtasks": PLAN["subtasks"][:1]}
    async with (
        serve_fake_anthropic(reply) as fake,
        Client(create_server(settings_for(fake, db_path=":memory:"))) as client,
    ):
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.call_tool, "execute_plan", {"plan": one})
                await repair_sent.wait()
                tg.cancel_scope.cancel()
        listed = await client.call_tool("list_runs", {})
        assert listed.structured_content is not None
        (run,) = listed.structured_content["runs"]
        result = await client.read_resource(f"subagent://runs/{run['run_id']}")
    record = json.loads(result.contents[0].text)  # type: ignore[union-attr]
    assert record["status"] == "cancelled"
    assert record["results"]["t0"]["status"] == "cancelled"
    assert Usage.model_validate(record["usage"]) == fake.billed_usage == Usage(input_tokens=500, output_tokens=300)


def planner_then_samples(planner_usage: Usage) -> Callable[[FakeRequest], FakeReply]:
    """The planner gets the demo plan billed at ``planner_usage``; every other call a small sample."""

    def reply(request: FakeRequest) -> FakeReply:
        if "Plan the user's task" in request.system_text:
            return json_reply(demo_plan_draft(), usage=planner_usage)
        return json_reply(sample_for_schema(request.schema or {}), usage=Usage(input_tokens=300, output_tokens=50))

    return reply


def subtasks_worst_usd(settings: Settings) -> float:
    plan = Plan.model_validate({"plan_id": "p", "task": "Pick a database", **demo_plan_draft()})
    return sum(t.max_cost_usd for t in estimate_plan(plan, settings, BUILTIN_ROLES).tasks)


def fast_planner(fake: FakeAnthropic) -> tuple[Settings, float]:
    """Settings whose planner runs on the cheap tier, and a bound above what its call could reserve."""
    settings = settings_for(fake)
    settings = settings.model_copy(update={"planner_model": settings.subagent_model})
    prompt_at_most = Usage(input_tokens=5_000, output_tokens=PLANNER_MAX_TOKENS)
    return settings, cost_usd(prompt_at_most, settings.planner_model, settings.prices)


async def test_orchestrate_does_not_send_a_planner_call_that_could_cross_the_ceiling() -> None:
    async with serve_fake_anthropic(planner_then_samples(Usage(input_tokens=300, output_tokens=100))) as fake:
        settings, _ = fast_planner(fake)
        floor = cost_usd(Usage(output_tokens=PLANNER_MAX_TOKENS), settings.planner_model, settings.prices)
        settings = settings.model_copy(update={"max_run_cost_usd": floor / 2})
        async with Client(create_server(settings)) as client:
            result = await client.call_tool("orchestrate", {"task": "Pick a database"})
    assert result.is_error
    assert "budget:" in text_of(result)
    assert fake.message_requests == []


async def test_orchestrate_counts_the_planners_spend_toward_the_run_ceiling() -> None:
    big_plan = Usage(input_tokens=200_000, output_tokens=PLANNER_MAX_TOKENS)  # billed far above its estimate
    async with serve_fake_anthropic(planner_then_samples(big_plan)) as fake:
        settings, planner_worst = fast_planner(fake)
        ceiling = planner_worst + 1.5 * subtasks_worst_usd(settings)  # room for the planner and every subtask
        assert cost_usd(big_plan, settings.planner_model, settings.prices) > ceiling  # ... until it is billed
        settings = settings.model_copy(update={"max_run_cost_usd": ceiling})
        async with Client(create_server(settings)) as client:
            result = await client.call_tool("orchestrate", {"task": "Pick a database"})
    out = OrchestrateResult.model_validate(result.structured_content)
    assert {r.status for r in out.report.results} == {"skipped"}
    independent = {s.id for s in out.plan.subtasks if not s.depends_on}
    assert all((r.error or "").startswith("budget:") for r in out.report.results if r.task_id in independent)
    assert len(fake.message_requests) == 1  # the planner only: nothing refused was sent
    assert out.total.usage == fake.billed_usage


async def test_orchestrate_spends_nothing_on_subtasks_when_the_ceiling_cannot_also_hold_the_synthesis() -> None:
    async with serve_fake_anthropic(planner_then_samples(Usage(input_tokens=300, output_tokens=100))) as fake:
        settings, planner_worst = fast_planner(fake)
        ceiling = planner_worst + 1.5 * subtasks_worst_usd(settings)
        synthesis_floor = cost_usd(Usage(output_tokens=SYNTHESIS_MAX_TOKENS), settings.synthesis_model, settings.prices)
        assert synthesis_floor > ceiling  # its max_tokens alone cannot fit
        settings = settings.model_copy(update={"max_run_cost_usd": ceiling})
        async with Client(create_server(settings)) as client:
            result = await client.call_tool("orchestrate", {"task": "Pick a database"})
    assert not result.is_error, text_of(result)
    out = OrchestrateResult.model_validate(result.structured_content)
    assert {r.status for r in out.report.results} == {"skipped"}
    independent = [r for r in out.report.results if r.task_id in {s.id for s in out.plan.subtasks if not s.depends_on}]
    assert all("kept for the synthesis" in (r.error or "") for r in independent)
    assert len(fake.message_requests) == 1  # the planner only
    assert out.total.usage == fake.billed_usage
    assert out.total.cost_usd <= ceiling


async def test_orchestrates_own_max_cost_usd_holds_the_whole_orchestration_in_place_of_the_configured_one() -> None:
    async with serve_fake_anthropic(planner_then_samples(Usage(input_tokens=300, output_tokens=100))) as fake:
        settings, planner_worst = fast_planner(fake)  # the configured ceiling stays the default $5
        ceiling = planner_worst + 1.5 * subtasks_worst_usd(settings)
        async with Client(create_server(settings)) as client:
            result = await client.call_tool("orchestrate", {"task": "Pick a database", "max_cost_usd": ceiling})
            refused = await client.call_tool("orchestrate", {"task": "Pick a database", "max_cost_usd": -1})
    assert not result.is_error, text_of(result)
    out = OrchestrateResult.model_validate(result.structured_content)
    assert {r.status for r in out.report.results} == {"skipped"}  # the synthesis's room is kept, as configured
    assert len(fake.message_requests) == 1  # the planner only
    assert out.total.cost_usd <= ceiling
    assert refused.is_error
    assert "max_cost_usd must be above 0" in text_of(refused)


async def test_a_resumed_run_still_counts_what_was_spent_before_it(tmp_path: Path) -> None:
    plan = Plan.model_validate(
        {
            "plan_id": "p-prior",
            "task": "t",
            "subtasks": [
                {"id": "a", "role": "writer", "instructions": "x", "depends_on": []},
                {"id": "c", "role": "writer", "instructions": "y", "depends_on": []},
            ],
        }
    )
    outage = True

    def script(request: CompletionRequest) -> Completion | JsonObject:
        if request.label == "a" and outage:
            raise ModelUnavailableError("Anthropic API unavailable: overloaded (529)")
        answer = as_completion(sample_for_schema(request.output_schema), request)
        return answer.model_copy(update={"usage": Usage(input_tokens=big_spend)})

    def reserved(request: CompletionRequest) -> int:
        return reserved_prompt_tokens(request) + request.max_tokens

    backend = ScriptedBackend(script)
    settings = Settings(anthropic_api_key=SecretStr("k"), db_path=str(tmp_path / "runs.db"))
    big_spend = 0
    async with Service.open(settings, backend) as service:  # a dry run to learn what each call reserves
        await service.execute_plan(plan, max_concurrency=1)
    worst = max(reserved(r) for r in backend.seen)
    prior = Spend(usage=Usage(input_tokens=100_000))
    ceiling = prior.usage.total_tokens + worst + 10
    big_spend = worst + 20  # what c bills: with the prior, no room is left for a's retry
    async with Service.open(settings, backend) as service:
        first = await service.execute_plan(plan, max_concurrency=1, max_total_tokens=ceiling, prior_spend=prior)
        assert {r.task_id: r.status for r in first.results} == {"a": "failed", "c": "succeeded"}
        outage = False
        resumed = await service.resume_run(first.run_id)
    a = next(r for r in resumed.results if r.task_id == "a")
    assert a.status == "skipped"
    assert (a.error or "").startswith("budget:")


async def test_the_synthesis_is_held_to_the_ceiling_with_the_planning_counted() -> None:
    planner_bill = Usage(input_tokens=100_000)  # what the planner cost, billed far above its estimate

    def script(request: CompletionRequest) -> Completion | JsonObject:
        if request.label == "plan":
            return as_completion(demo_plan_draft(), request).model_copy(update={"usage": planner_bill})
        return sample_for_schema(request.output_schema)

    def settings_with(ceiling: float | None) -> Settings:
        fast = Settings().subagent_model
        return Settings(anthropic_api_key=SecretStr("k"), planner_model=fast, max_run_cost_usd=ceiling)

    dry_backend = ScriptedBackend(script)
    async with Service.open(settings_with(None), dry_backend) as service:  # learn what each part costs
        dry = await service.orchestrate("Pick a database")
    synthesis = dry_backend.seen[-1]
    assert synthesis.label == "synthesis"
    prices = Settings().prices
    reserve = Usage(input_tokens=reserved_prompt_tokens(synthesis), output_tokens=synthesis.max_tokens)
    synthesis_worst = cost_usd(reserve, synthesis.model, prices)
    assert dry.plan.planning is not None
    planning = dry.plan.planning.cost_usd
    ceiling = dry.report.cost_usd + synthesis_worst + planning / 2  # fits beside the run, not beside run + planning

    backend = ScriptedBackend(script)
    async with Service.open(settings_with(ceiling), backend) as service:  # no room held: conclude alone decides
        plan = await service.plan_task("Pick a database", limits=service.ceilings())
        report = await service.execute_plan(plan, prior_spend=plan.planning)
        out = await service.conclude(plan, report)
    assert out.report.status == "succeeded"
    assert out.synthesis is None
    assert (out.synthesis_error or "").startswith("budget:")
    assert "SUBAGENT_MCP_MAX_RUN_COST_USD" in (out.synthesis_error or "")
    assert "synthesis" not in [r.label for r in backend.seen]


async def test_orchestrate_keeps_room_for_the_synthesis_so_a_tight_run_still_ends_with_an_answer() -> None:
    async def script(request: CompletionRequest) -> JsonObject | Completion:
        await anyio.lowlevel.checkpoint()  # calls overlap, as real ones do
        if request.label in ("plan", "synthesis"):
            return demo_plan_draft() if request.label == "plan" else sample_for_schema(request.output_schema)
        worst = Usage(input_tokens=reserved_prompt_tokens(request), output_tokens=request.max_tokens)
        return as_completion(sample_for_schema(request.output_schema), request).model_copy(update={"usage": worst})

    def settings_with(ceiling: float | None) -> Settings:
        return Settings(anthropic_api_key=SecretStr("k"), max_run_cost_usd=ceiling)

    dry_backend = ScriptedBackend(script)
    async with Service.open(settings_with(None), dry_backend) as service:  # learn the planning and the room
        dry = await service.orchestrate("Pick a database")
        _, record = await service.get_run(dry.report.run_id)
    held = record.options.held_back.cost_usd
    prices = Settings().prices
    subtask_worst = max(
        cost_usd(Usage(input_tokens=reserved_prompt_tokens(r), output_tokens=r.max_tokens), r.model, prices)
        for r in dry_backend.seen
        if r.label not in ("plan", "synthesis")
    )
    assert dry.plan.planning is not None
    ceiling = dry.plan.planning.cost_usd + held + 1.5 * subtask_worst  # room for one subtask at a time, and the answer

    backend = ScriptedBackend(script)
    async with Service.open(settings_with(ceiling), backend) as service:
        out = await service.orchestrate("Pick a database")
    assert out.synthesis is not None  # the run stopped short, but the host still gets an answer that says so
    assert not out.synthesis.complete
    assert any("kept for the synthesis" in (r.error or "") for r in out.report.results)
    assert out.total.cost_usd <= ceiling


async def test_resume_run_with_a_raised_ceiling_runs_what_the_old_one_refused() -> None:
    async with serve_fake_anthropic() as fake:
        settings = settings_for(fake)
        async with Client(create_server(settings)) as client:
            stopped = await client.call_tool("execute_plan", {"plan": PLAN, "max_cost_usd": 1e-6})
            first = RunReport.model_validate(stopped.structured_content)
            resumed = await client.call_tool("resume_run", {"run_id": first.run_id, "max_cost_usd": 5.0})
    assert {r.status for r in first.results} == {"skipped"}
    assert all("raise it with max_cost_usd" in (r.error or "") for r in first.results)
    assert not resumed.is_error, text_of(resumed)
    report = RunReport.model_validate(resumed.structured_content)
    assert report.run_id == first.run_id
    assert report.status == "succeeded"
    assert len(fake.message_requests) == len(PLAN["subtasks"])  # nothing was sent for the refused attempts
