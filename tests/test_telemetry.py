"""Where the money goes: a run's spans and metrics, as an OpenTelemetry SDK records them, beside the fake API's bill."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import anyio
import pytest
from mcp import Client
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import SecretStr

from subagent_mcp.backends.scripted import sample_for_schema
from subagent_mcp.contracts import OrchestrateResult, Plan, RunReport, Usage
from subagent_mcp.core.caching import min_cacheable_tokens
from subagent_mcp.demo import demo_plan_draft
from subagent_mcp.mcp_server import create_server
from subagent_mcp.settings import Settings
from subagent_mcp.telemetry import Telemetry
from subagent_mcp.testing import FakeAnthropic, FakeReply, FakeRequest, error_reply, json_reply, serve_fake_anthropic
from subagent_mcp.testing.results import text_of

pytestmark = pytest.mark.anyio

KEY = "sk-ant-test-SECRET-otel-5150"
HAIKU = "claude-haiku-5-5"
DOCUMENT = "The quarterly report says revenue grew. " * (min_cacheable_tokens(HAIKU) * 4 // 40 + 10)
"""A task long enough that subtasks sharing it write and read the prompt cache."""


class _Route(SpanProcessor):
    """The process-wide provider's one processor: hands finished spans to the current test's exporter, if any."""

    def __init__(self) -> None:
        self.to: InMemorySpanExporter | None = None

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if self.to is not None:
            self.to.export([span])


_route = _Route()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Every finished span of this test: ours, and the MCP SDK's (which only ever uses the global provider).

    A global tracer provider can be set once per process, so one is set here, once, and routed per test.
    """
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(_route)
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    _route.to = exporter
    yield exporter
    _route.to = None


def telemetry_to(exporter: InMemorySpanExporter, reader: InMemoryMetricReader) -> Telemetry:
    """Our spans into ``exporter`` and our metrics into ``reader``, through providers of this test's own."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Telemetry.of(provider, MeterProvider(metric_readers=[reader]))


def settings_for(fake: FakeAnthropic) -> Settings:
    return Settings(
        anthropic_api_key=SecretStr(KEY), anthropic_base_url=fake.base_url, retry_max_wait_s=0, db_path=":memory:"
    )


def plan_then_samples(request: FakeRequest) -> FakeReply:
    """The planner gets the demo plan (its subtasks share the task); every other call a schema-valid sample."""
    if "Plan the user's task" in request.system_text:
        return json_reply(demo_plan_draft())
    return json_reply(sample_for_schema(request.schema or {}))


def one_task_plan(role: str) -> Plan:
    subtask = {"id": "a", "role": role, "instructions": "Look into it."}
    return Plan.model_validate({"plan_id": f"p-{role}", "task": "Pick a database", "subtasks": [subtask]})


def named(finished: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in finished if s.name == name]


def one(finished: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    (span,) = named(finished, name)
    return span


def children(finished: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [s for s in finished if s.parent is not None and s.parent.span_id == parent.context.span_id]


def billed(span: ReadableSpan) -> tuple[Any, ...]:
    """(input, output, cache read, cache write) tokens as a span states them; input includes the cache's."""
    attributes = span.attributes or {}
    keys = ("input_tokens", "output_tokens", "cache_read.input_tokens", "cache_creation.input_tokens")
    return tuple(attributes[f"gen_ai.usage.{key}"] for key in keys)


def as_billed(usage: Usage) -> tuple[int, ...]:
    total_in = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
    return (total_in, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens)


def histogram(reader: InMemoryMetricReader, name: str) -> list[HistogramDataPoint]:
    data = reader.get_metrics_data()
    assert data is not None
    points = [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]
    assert all(isinstance(p, HistogramDataPoint) for p in points)
    return [p for p in points if isinstance(p, HistogramDataPoint)]


async def test_an_orchestration_is_one_tree_under_its_tools_call_with_the_bill_on_every_model_call(
    spans: InMemorySpanExporter,
) -> None:
    reader = InMemoryMetricReader()
    task = f"Summarise this document.\n\n{DOCUMENT}"
    async with serve_fake_anthropic(plan_then_samples, api_key=KEY) as fake:
        server = create_server(settings_for(fake), telemetry=telemetry_to(spans, reader))
        async with Client(server) as client:
            result = await client.call_tool("orchestrate", {"task": task, "wait_s": 60})
    assert not result.is_error, text_of(result)
    out = OrchestrateResult.model_validate(result.structured_content)
    finished = spans.get_finished_spans()

    call = one(finished, "tools/call orchestrate")
    (workflow,) = children(finished, call)
    assert workflow.name == "invoke_workflow orchestrate"
    assert workflow.context is not None
    assert call.context is not None
    assert workflow.context.trace_id == call.context.trace_id
    assert (workflow.attributes or {})["gen_ai.operation.name"] == "invoke_workflow"
    assert (workflow.attributes or {})["subagent_mcp.run.id"] == out.report.run_id
    steps = children(finished, workflow)
    roles = sorted(s.role for s in out.plan.subtasks)
    assert sorted(s.name for s in steps) == sorted(
        ["plan", "invoke_agent synthesizer", *(f"invoke_agent {role}" for role in roles)]
    )
    for step in steps:  # each step holds its model calls: the planner's, each subtask's, the synthesis's
        (chat,) = children(finished, step)
        attributes = chat.attributes or {}
        assert chat.kind == SpanKind.CLIENT
        assert chat.name == f"chat {attributes['gen_ai.request.model']}"
        assert attributes["gen_ai.provider.name"] == "anthropic"
        assert attributes["gen_ai.response.model"] == attributes["gen_ai.request.model"]
        assert attributes["gen_ai.response.finish_reasons"] == ("end_turn",)
        if step.name != "plan":
            assert billed(step) == billed(chat)  # a step's usage is its calls'

    chats = [s for s in finished if s.name.startswith("chat ")]
    assert len(chats) == len(fake.message_requests) == len(out.plan.subtasks) + 2
    assert sorted(billed(s) for s in chats) == sorted(as_billed(u) for u in fake.billed)  # call by call, the bill
    assert any(u.cache_read_tokens for u in fake.billed)  # the shared task was read from the cache
    assert billed(workflow) == as_billed(fake.billed_usage) == as_billed(out.total.usage)
    assert (workflow.attributes or {})["subagent_mcp.cost_usd"] == pytest.approx(out.total.cost_usd)

    tokens = histogram(reader, "gen_ai.client.token.usage")
    by_type = {
        t: sum(p.sum for p in tokens if (p.attributes or {})["gen_ai.token.type"] == t) for t in ("input", "output")
    }
    total_in, total_out, _, _ = as_billed(fake.billed_usage)
    assert by_type == {"input": total_in, "output": total_out}
    durations = histogram(reader, "gen_ai.client.operation.duration")
    assert sum(p.count for p in durations) == len(fake.message_requests)

    for span in finished:  # content capture is off: no prompt, no output, no key in any attribute
        for value in (span.attributes or {}).values():
            text = str(value)
            assert "quarterly report" not in text
            assert KEY not in text
            assert "Summarise" not in text


async def test_a_failed_model_call_is_an_error_with_the_apis_status_as_its_type(spans: InMemorySpanExporter) -> None:
    reader = InMemoryMetricReader()
    async with serve_fake_anthropic(api_key=KEY) as fake:
        fake.enqueue(error_reply(400, "max_tokens: too large for this model"))
        async with Client(create_server(settings_for(fake), telemetry=telemetry_to(spans, reader))) as client:
            await client.call_tool("run_subagent", {"role": "writer", "instructions": "Write it"})
    finished = spans.get_finished_spans()
    call, agent = one(finished, "tools/call run_subagent"), one(finished, "invoke_agent writer")
    assert children(finished, call) == [agent]
    (chat,) = children(finished, agent)
    assert chat.status.status_code == StatusCode.ERROR
    assert (chat.attributes or {})["error.type"] == "400"
    assert "max_tokens" not in (chat.status.description or "")  # the type, never the API's message
    assert (agent.attributes or {})["subagent_mcp.task.status"] == "failed"
    assert agent.status.status_code == StatusCode.ERROR
    (duration,) = histogram(reader, "gen_ai.client.operation.duration")
    assert (duration.attributes or {})["error.type"] == "400"
    assert histogram(reader, "gen_ai.client.token.usage") == []  # a refused request billed nothing


async def test_a_background_run_stays_under_the_call_that_started_it_and_ends_after_it(
    spans: InMemorySpanExporter,
) -> None:
    release = anyio.Event()

    async def held(request: FakeRequest) -> FakeReply:
        await release.wait()
        return json_reply(sample_for_schema(request.schema or {}))

    plan = one_task_plan("researcher")
    async with (
        serve_fake_anthropic(held, api_key=KEY) as fake,
        Client(create_server(settings_for(fake), telemetry=telemetry_to(spans, InMemoryMetricReader()))) as c,
    ):
        started = await c.call_tool("execute_plan", {"plan": plan.model_dump(mode="json"), "wait_s": 0})
        assert (started.structured_content or {})["status"] == "running"
        release.set()
        done = await c.call_tool("wait_run", {"run_id": (started.structured_content or {})["run_id"], "wait_s": 60})
    assert RunReport.model_validate(done.structured_content).status == "succeeded"
    finished = spans.get_finished_spans()
    call, workflow = one(finished, "tools/call execute_plan"), one(finished, "invoke_workflow execute")
    assert workflow.parent is not None
    assert call.context is not None
    assert workflow.parent.span_id == call.context.span_id  # not wait_run's: the run belongs to its start
    assert workflow.end_time is not None
    assert call.end_time is not None
    assert workflow.end_time > call.end_time
    assert [s.name for s in children(finished, workflow)] == ["invoke_agent researcher"]
    (link,) = one(finished, "tools/call wait_run").links  # the caller waiting elsewhere can find the run
    assert link.context == workflow.context


async def test_a_cancelled_run_ends_its_spans_as_cancelled(spans: InMemorySpanExporter) -> None:
    arrived, never = anyio.Event(), anyio.Event()

    async def held(request: FakeRequest) -> FakeReply:
        arrived.set()
        await never.wait()
        return json_reply({})

    plan = one_task_plan("writer")
    async with (
        serve_fake_anthropic(held, api_key=KEY) as fake,
        Client(create_server(settings_for(fake), telemetry=telemetry_to(spans, InMemoryMetricReader()))) as c,
    ):
        started = await c.call_tool("execute_plan", {"plan": plan.model_dump(mode="json"), "wait_s": 0})
        await arrived.wait()  # the subtask's call is in flight
        await c.call_tool("cancel_run", {"run_id": (started.structured_content or {})["run_id"]})
    finished = spans.get_finished_spans()
    for name in ("invoke_workflow execute", "invoke_agent writer", f"chat {HAIKU}"):
        span = one(finished, name)
        assert span.status.status_code == StatusCode.ERROR, name
        assert (span.attributes or {})["error.type"] == "cancelled", name


def test_without_an_sdk_a_span_records_nothing() -> None:
    telemetry = Telemetry.of(trace.NoOpTracerProvider(), metrics.NoOpMeterProvider())
    with telemetry.chat(HAIKU, 100, "a") as span:
        assert not span.is_recording()
