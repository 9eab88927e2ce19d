"""Batch mode: subtasks go out as Message Batches at half price, grouped as they become ready, and survive a restart.

Through real MCP clients and the real SDK on the fake API, whose batch endpoints bill at half price and
can hold a batch ``in_progress`` until the test releases it (no sleeps: polls are tiny, gathers are
event-driven, and a gather that fails to close on its own would hang the test into its ``fail_after``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import TextResourceContents
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr

from run_gates import handle_of
from store_setup import OPTIONS
from subagent_mcp.backends.batch import AnthropicBatches
from subagent_mcp.backends.scripted import sample_for_schema
from subagent_mcp.batching import BatchBackend, Outcome
from subagent_mcp.contracts import (
    CompletionRequest,
    JsonObject,
    ModelMessage,
    OrchestrateResult,
    Plan,
    RunReport,
    SubagentResult,
    Subtask,
)
from subagent_mcp.core.pricing import cost_usd
from subagent_mcp.demo import demo_plan_draft
from subagent_mcp.errors import ModelError
from subagent_mcp.mcp_server import create_server
from subagent_mcp.planning import estimate_plan
from subagent_mcp.roles import BUILTIN_ROLES
from subagent_mcp.settings import Settings
from subagent_mcp.store import Store
from subagent_mcp.telemetry import Telemetry
from subagent_mcp.testing import FakeAnthropic, FakeReply, FakeRequest, json_reply, serve_fake_anthropic, text_reply
from subagent_mcp.testing.results import text_of

pytestmark = pytest.mark.anyio

KEY = "sk-ant-test-batch-mode"


def settings_for(fake: FakeAnthropic, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "db_path": ":memory:",
        "retry_max_wait_s": 0,
        "batch_poll_s": 0.002,
        "batch_gather_s": 600,  # a gather that does not close by itself hangs into fail_after
    }
    return Settings(anthropic_api_key=SecretStr(KEY), anthropic_base_url=fake.base_url, **{**base, **overrides})


def plan(*ids: str, deps: dict[str, list[str]] | None = None) -> JsonObject:
    deps = deps or {}
    subtasks = [{"id": i, "role": "writer", "instructions": f"do {i}", "depends_on": deps.get(i, [])} for i in ids]
    return {"plan_id": f"p-{'-'.join(ids)}", "task": "Write a short report", "subtasks": subtasks}


def batch_tasks(fake: FakeAnthropic) -> list[list[str]]:
    """The subtask ids each created batch carried, batch by batch."""
    return [
        sorted(FakeRequest(0, 0, "POST", "/v1/messages", {}, params).subtask_id for params in b.requests.values())
        for b in fake.batches.created
    ]


def report_of(result: Any) -> RunReport:
    assert not result.is_error, text_of(result)
    return RunReport.model_validate(result.structured_content)


def failures_of(report: RunReport) -> str:
    """Why each subtask that did not succeed ended so, for an assertion's message."""
    return "; ".join(f"{r.task_id} {r.status}: {r.error}" for r in report.results if r.status != "succeeded")


async def test_ready_subtasks_travel_in_one_batch_and_the_run_costs_half_the_live_price() -> None:
    with anyio.fail_after(20):
        async with serve_fake_anthropic(api_key=KEY) as fake:
            settings = settings_for(fake)
            async with Client(create_server(settings)) as c:
                three = plan("a", "b", "c", deps={"c": ["a", "b"]})
                started = handle_of(await c.call_tool("execute_plan", {"plan": three, "batch": True, "wait_s": 0}))
                report = report_of(await c.call_tool("wait_run", {"run_id": started.run_id}))

    assert report.status == "succeeded"
    assert batch_tasks(fake) == [["a", "b"], ["c"]]  # a and b were ready at once; c when both had succeeded
    assert fake.message_requests == []  # nothing went to the live Messages API
    assert report.usage == fake.batches.billed_usage
    assert report.cost_usd == pytest.approx(fake.batches.billed_usd(settings.prices), abs=1e-8)
    live = sum(cost_usd(u, model, settings.prices) for model, u in fake.batches.billed)
    assert report.cost_usd == pytest.approx(live * 0.5, abs=1e-8)
    assert report.batch_saved_usd == pytest.approx(live - report.cost_usd, abs=1e-8)


async def test_the_estimate_of_a_batch_run_shows_the_batch_price() -> None:
    async with serve_fake_anthropic(api_key=KEY) as fake:
        settings = settings_for(fake)
        async with Client(create_server(settings)) as c:
            two = plan("a", "b")
            report = report_of(await c.call_tool("execute_plan", {"plan": two, "batch": True}))
            live_run = report_of(await c.call_tool("execute_plan", {"plan": two}))  # the same plan, live
    live = estimate_plan(Plan.model_validate(two), settings, BUILTIN_ROLES)
    assert report.estimate is not None
    assert report.estimate.batch
    assert [t.cost_usd for t in report.estimate.tasks] == pytest.approx([t.cost_usd / 2 for t in live.tasks])
    assert live.batch_cost_usd == pytest.approx(report.estimate.cost_usd)  # a live estimate says what batch costs
    assert live_run.estimate is not None
    assert not live_run.estimate.batch
    assert live_run.cost_usd == pytest.approx(2 * report.cost_usd, abs=1e-8)  # same replies, same tokens: 0.5x


async def test_a_restarted_server_reattaches_to_the_batch_in_flight_instead_of_sending_it_again(
    db_location: str,
) -> None:
    where = {"db_url": SecretStr(db_location)} if db_location.startswith("postgresql") else {"db_path": db_location}
    with anyio.fail_after(20):
        async with serve_fake_anthropic(api_key=KEY) as fake:
            settings = settings_for(fake, **where)
            fake.batches.hold()
            async with Client(create_server(settings)) as c:
                started = await c.call_tool("execute_plan", {"plan": plan("a", "b"), "batch": True, "wait_s": 0})
                run_id = handle_of(started).run_id
                await fake.batches.wait_created(1)
            # the server stopped with the batch in flight: the run is interrupted, the batch goes on upstream
            async with Client(create_server(settings)) as c:
                resumed = handle_of(await c.call_tool("resume_run", {"run_id": run_id, "wait_s": 0}))
                fake.batches.release()
                report = report_of(await c.call_tool("wait_run", {"run_id": resumed.run_id}))

    assert report.status == "succeeded", failures_of(report)
    assert batch_tasks(fake) == [["a", "b"]]  # exactly one batch for those subtasks: 0 re-submitted
    assert len(fake.batches.billed) == 2  # each request billed once
    assert report.usage == fake.batches.billed_usage
    assert report.cost_usd == pytest.approx(fake.batches.billed_usd(settings.prices), abs=1e-8)


async def test_errored_and_expired_batch_results_fail_their_subtasks_and_skip_dependents() -> None:
    with anyio.fail_after(20):
        async with serve_fake_anthropic(api_key=KEY) as fake:
            fake.batches.outcomes.update({"a": "errored", "b": "expired"})
            async with Client(create_server(settings_for(fake))) as c:
                four = plan("a", "b", "c", "d", deps={"c": ["a"]})
                report = report_of(await c.call_tool("execute_plan", {"plan": four, "batch": True}))

    status = {r.task_id: r.status for r in report.results}
    assert status == {"a": "failed", "b": "failed", "c": "skipped", "d": "succeeded"}
    errors = {r.task_id: r.error or "" for r in report.results}
    assert "errored" in errors["a"]
    assert "resume_run sends it again" in errors["a"]
    assert "expired" in errors["b"]
    assert "depends on 'a'" in errors["c"]
    assert batch_tasks(fake) == [["a", "b", "d"]]  # failures are not retried in a loop: one batch in all


async def test_a_results_file_that_is_not_json_lines_fails_the_subtasks_with_a_clear_error_and_resume_resends() -> None:
    with anyio.fail_after(20):
        async with serve_fake_anthropic(api_key=KEY) as fake:
            fake.batches.corrupt_results = True
            async with Client(create_server(settings_for(fake))) as c:
                report = report_of(await c.call_tool("execute_plan", {"plan": plan("a", "b"), "batch": True}))
                still_serving = await c.call_tool("list_runs", {})
                fake.batches.corrupt_results = False
                resumed = report_of(await c.call_tool("resume_run", {"run_id": report.run_id}))

    assert [r.status for r in report.results] == ["failed", "failed"]
    assert all("is not a result" in (r.error or "") for r in report.results)
    assert not still_serving.is_error
    assert resumed.status == "succeeded"  # unreadable results are given up on: the resume sends them afresh
    assert batch_tasks(fake) == [["a", "b"], ["a", "b"]]


@pytest.mark.subprocess
async def test_show_and_the_run_resource_state_the_batch_discount(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    async with (
        serve_fake_anthropic(api_key=KEY) as fake,
        Client(create_server(settings_for(fake, db_path=str(db)))) as c,
    ):
        result = await c.call_tool("execute_plan", {"plan": plan("a", "b"), "batch": True})
        report = report_of(result)
        contents = (await c.read_resource(f"subagent://runs/{report.run_id}")).contents[0]
    assert isinstance(contents, TextResourceContents)
    stored = json.loads(contents.text)
    breakdown = stored["cost_breakdown"]
    assert breakdown["batch_saved_usd"] == pytest.approx(report.cost_usd, abs=1e-8)  # half price: saved as much
    assert stored["options"]["batch"] is True
    assert stored["options"]["task_timeout_s"] > 24 * 3600  # a subtask may wait out a whole batch (24 h)
    assert "Batch mode: subtasks went through the Message Batches API at half price" in text_of(result)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "SUBAGENT_MCP_"))}
    script = Path(sys.executable).with_name("subagent-mcp")
    shown = await anyio.run_process([str(script), "show", report.run_id], env={**env, "SUBAGENT_MCP_DB_PATH": str(db)})
    assert f"the discount saved ${breakdown['batch_saved_usd']:.4f}" in shown.stdout.decode()


async def test_cancel_run_cancels_the_batch_upstream() -> None:
    with anyio.fail_after(20):
        async with serve_fake_anthropic(api_key=KEY) as fake:
            fake.batches.hold()
            async with Client(create_server(settings_for(fake))) as c:
                started = await c.call_tool("execute_plan", {"plan": plan("a", "b"), "batch": True, "wait_s": 0})
                await fake.batches.wait_created(1)
                await c.call_tool("cancel_run", {"run_id": handle_of(started).run_id})
    assert [b.cancel_asked for b in fake.batches.created] == [True]
    assert fake.batches.billed == []


async def test_batch_mode_is_refused_with_a_reason_where_there_is_no_batch_api() -> None:
    async with Client(create_server(Settings(demo=True, db_path=":memory:"))) as c:
        refused = await c.call_tool("execute_plan", {"plan": plan("a"), "batch": True})
    assert refused.is_error
    assert "Message Batches API" in text_of(refused)
    assert "demo backend" in text_of(refused)


def planner_then_default(request: FakeRequest) -> FakeReply:
    """The demo's plan for the planner; every other request gets the fake's schema-valid default."""
    if "Plan the user's task" in request.system_text:
        return json_reply(demo_plan_draft())
    return json_reply(sample_for_schema(request.schema or {}))


async def test_orchestrate_in_batch_mode_plans_and_synthesizes_live_and_batches_the_subtasks() -> None:
    with anyio.fail_after(20):
        async with serve_fake_anthropic(planner_then_default, api_key=KEY) as fake:
            settings = settings_for(fake)
            async with Client(create_server(settings)) as c:
                started = await c.call_tool("orchestrate", {"task": "Compare two options", "batch": True, "wait_s": 0})
                done = await c.call_tool("wait_run", {"run_id": handle_of(started).run_id})

    assert not done.is_error, text_of(done)
    out = OrchestrateResult.model_validate(done.structured_content)
    assert out.synthesis is not None
    assert out.report.status == "succeeded"
    assert len(fake.message_requests) == 2  # the planner and the synthesis, live
    assert batch_tasks(fake) == [["research-a", "research-b"], ["analyse"], ["write-up"]]
    live = sum(cost_usd(u, r.model, settings.prices) for r, u in fake.answered)
    assert out.total.cost_usd == pytest.approx(live + fake.batches.billed_usd(settings.prices), abs=1e-8)
    assert out.total.usage == fake.billed_usage + fake.batches.billed_usage


async def test_a_reply_that_fails_validation_gets_its_repair_turn_in_the_next_batch() -> None:
    seen: set[str] = set()

    def invalid_once(request: FakeRequest) -> FakeReply:
        if request.subtask_id == "a" and "a" not in seen:
            seen.add("a")
            return text_reply("not JSON at all")
        return json_reply(sample_for_schema(request.schema or {}))

    with anyio.fail_after(20):
        async with (
            serve_fake_anthropic(invalid_once, api_key=KEY) as fake,
            Client(create_server(settings_for(fake))) as c,
        ):
            report = report_of(await c.call_tool("execute_plan", {"plan": plan("a", "b"), "batch": True}))

    assert [(r.task_id, r.status, r.attempts) for r in report.results] == [("a", "succeeded", 2), ("b", "succeeded", 1)]
    assert batch_tasks(fake) == [["a", "b"], ["a"]]  # the repair turn went in the next batch, at the batch price
    assert fake.message_requests == []
    assert report.usage == fake.batches.billed_usage


async def test_plan_task_says_what_the_plan_would_cost_in_batch_mode() -> None:
    async with (
        serve_fake_anthropic(planner_then_default, api_key=KEY) as fake,
        Client(create_server(settings_for(fake))) as c,
    ):
        result = await c.call_tool("plan_task", {"task": "Compare two options"})
    assert not result.is_error, text_of(result)
    estimate = Plan.model_validate(result.structured_content).estimate
    assert estimate is not None
    assert not estimate.batch
    assert estimate.synthesis is not None
    subtasks = sum(t.cost_usd for t in estimate.tasks)
    assert estimate.batch_cost_usd == pytest.approx(subtasks / 2 + estimate.synthesis.cost_usd, abs=1e-5)
    assert f"In batch mode (batch=true: subtasks at half price, slower): ~${estimate.batch_cost_usd:.4f}" in (
        text_of(result)
    )


async def test_a_batch_the_api_cannot_report_on_fails_its_subtasks_and_a_resume_polls_it_again(tmp_path: Path) -> None:
    with anyio.fail_after(20):
        async with serve_fake_anthropic(api_key=KEY) as fake:
            settings = settings_for(fake, max_retries=1, db_path=str(tmp_path / "runs.db"))
            fake.batches.failing_polls = 2  # the first poll and its one retry
            async with Client(create_server(settings)) as c:
                report = report_of(await c.call_tool("execute_plan", {"plan": plan("a", "b"), "batch": True}))
                resumed = report_of(await c.call_tool("resume_run", {"run_id": report.run_id}))

    assert [r.status for r in report.results] == ["failed", "failed"]
    assert all("could not poll batch" in (r.error or "") and KEY not in (r.error or "") for r in report.results)
    assert resumed.status == "succeeded"
    assert batch_tasks(fake) == [["a", "b"]]  # the resume re-attached: nothing sent twice
    assert resumed.usage == fake.batches.billed_usage


async def test_each_batched_call_is_a_chat_span_priced_at_the_batch_price() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = Telemetry.of(provider, MeterProvider(metric_readers=[InMemoryMetricReader()]))
    async with (
        serve_fake_anthropic(api_key=KEY) as fake,
        Client(create_server(settings_for(fake), telemetry=telemetry)) as c,
    ):
        report = report_of(await c.call_tool("execute_plan", {"plan": plan("a", "b"), "batch": True}))
    chats = [s for s in exporter.get_finished_spans() if s.name == "chat claude-haiku-5-5"]
    assert sorted(str((s.attributes or {})["gen_ai.request.model"]) for s in chats) == ["claude-haiku-5-5"] * 2
    costs = [(s.attributes or {})["subagent_mcp.cost_usd"] for s in chats]
    assert sum(c for c in costs if isinstance(c, float)) == pytest.approx(report.cost_usd, abs=1e-8)  # batch price


async def test_a_request_the_api_cannot_take_fails_alone_and_its_batch_siblings_get_their_replies() -> None:
    schemas: dict[str, JsonObject] = {
        "good": {"type": "object", "properties": {"a": {"type": "string"}}},
        "boolean": {"type": "object", "properties": {"a": True}},  # the SDK's transform raises TypeError
        "unknown": {"type": "object", "properties": {"a": {"type": "date"}}},  # ... and AssertionError here
    }
    outcomes: dict[str, str] = {}

    async def call(batcher: BatchBackend, subtask: Subtask) -> SubagentResult:
        request = CompletionRequest(
            model="claude-haiku-5-5",
            system="",
            messages=[ModelMessage(role="user", content=subtask.instructions)],
            output_schema=schemas[subtask.id],
            label=subtask.id,
        )
        try:
            outcomes[subtask.id] = (await batcher.complete(request)).text
        except ModelError as exc:
            outcomes[subtask.id] = f"error: {exc}"
        return SubagentResult(task_id=subtask.id, role="writer", status="succeeded")

    with anyio.fail_after(20):
        async with serve_fake_anthropic(api_key=KEY) as fake, Store.open(":memory:") as store:
            settings = settings_for(fake)
            one = Plan.model_validate(plan(*schemas))
            await store.save_plan(one)
            await store.create_run("run-1", one.plan_id, OPTIONS)
            batcher = BatchBackend(AnthropicBatches(settings), store, "run-1", poll_s=0.002, gather_s=600)
            async with batcher.running(), anyio.create_task_group() as tg:
                tracked = batcher.track(lambda subtask, _: call(batcher, subtask))

                async def run(subtask: Subtask) -> None:
                    await tracked(subtask, {})

                for subtask in one.subtasks:  # all three reach the batch together
                    tg.start_soon(run, subtask)

    assert set(json.loads(outcomes["good"])) == {"a"}
    assert outcomes["boolean"].startswith("error: output_schema has a boolean schema (true) at properties/a")
    assert outcomes["unknown"].startswith("error: output_schema cannot be sent to the Anthropic API at properties/a")
    assert sum(len(b.requests) for b in fake.batches.created) == 1  # only the good request was ever sent


class ResultsBug(AnthropicBatches):
    """The real adapter, except that reading results raises what no one expected (a bug)."""

    async def results(self, batch_id: str, expected: Mapping[str, str | None]) -> dict[str, Outcome]:
        raise RuntimeError("a bug while reading results")


async def test_a_bug_while_following_a_batch_fails_its_calls_and_not_the_run() -> None:
    with anyio.fail_after(20):
        async with serve_fake_anthropic(api_key=KEY) as fake, Store.open(":memory:") as store:
            one = Plan.model_validate(plan("a"))
            await store.save_plan(one)
            await store.create_run("run-1", one.plan_id, OPTIONS)
            batcher = BatchBackend(ResultsBug(settings_for(fake)), store, "run-1", poll_s=0.002, gather_s=600)
            request = CompletionRequest(
                model="claude-haiku-5-5",
                system="",
                messages=[ModelMessage(role="user", content="do a")],
                output_schema={"type": "object", "properties": {"a": {"type": "string"}}},
                label="a",
            )
            async with batcher.running():
                with pytest.raises(ModelError) as info:
                    await batcher.complete(request)
    assert "unexpected RuntimeError (see the server log)" in str(info.value)
    assert "a bug" not in str(info.value)
