"""``python -m benchmarks.telemetry``: what the spans and metrics cost, with no SDK and with one recording.

A 200-subtask plan (flat, zero-latency scripted backend, in-memory SQLite) runs through ``Service``
with telemetry on no-op providers (what a server without ``OTEL_EXPORTER_OTLP_ENDPOINT`` has) and on
an SDK recording every span and metric into a batch processor whose exporter drops them (the cost in
process, short of the network). Beside them, the telemetry calls one subtask makes (an agent span, a
chat span, its usage, two metric records) timed alone on the no-op providers. Median of 9 interleaved runs;
microseconds per subtask and ratios. Nothing is asserted.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import anyio
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from subagent_mcp.backends.scripted import ScriptedBackend
from subagent_mcp.contracts import Plan, SubagentResult, Usage
from subagent_mcp.service import Service
from subagent_mcp.settings import Settings
from subagent_mcp.telemetry import Telemetry, agent_result, spent

TASKS = 200
REPEATS = 9


class Dropped(SpanExporter):
    """An exporter that takes every batch and keeps nothing."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def flat_plan() -> Plan:
    subtasks = [{"id": f"t{i}", "role": "researcher", "instructions": f"Look at part {i}."} for i in range(TASKS)]
    return Plan.model_validate({"plan_id": "p-bench-otel", "task": "Benchmark the spans.", "subtasks": subtasks})


async def per_subtask_us(telemetry: Telemetry) -> float:
    settings = Settings.from_env({}, env_file=None, db_path=":memory:", max_concurrency=64)
    async with Service.open(settings, ScriptedBackend(), telemetry) as service:
        started = time.perf_counter()
        report = await service.execute_plan(flat_plan(), max_concurrency=64)
        elapsed = time.perf_counter() - started
    assert report.status == "succeeded"
    return elapsed / TASKS * 1e6


async def once_us(recording: bool) -> float:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Dropped()))
    telemetry = (
        Telemetry.of(provider, MeterProvider(metric_readers=[InMemoryMetricReader()]))
        if recording
        else Telemetry.of(trace.NoOpTracerProvider(), metrics.NoOpMeterProvider())
    )
    try:
        return await per_subtask_us(telemetry)
    finally:
        provider.shutdown()


def no_op_calls_us(rounds: int = 20_000) -> float:
    """The telemetry one subtask costs on no-op providers, alone: spans, attributes, metric records."""
    telemetry = Telemetry.of(trace.NoOpTracerProvider(), metrics.NoOpMeterProvider())
    usage = Usage(input_tokens=900, output_tokens=300, cache_read_tokens=2000)
    result = SubagentResult(task_id="t", role="researcher", status="succeeded", usage=usage, model="m")
    started = time.perf_counter()
    for _ in range(rounds):
        with telemetry.agent("researcher", "t", "m") as span:
            with telemetry.chat("m", 4096, "t") as chat:
                spent(chat, usage, 0.01)
            telemetry.record_call("m", "m", usage, 0.5, None)
            agent_result(span, result)
    return (time.perf_counter() - started) / rounds * 1e6


async def run() -> None:
    await once_us(recording=False)  # warm-up: imports, first SQLite connection
    pairs = [(await once_us(recording=False), await once_us(recording=True)) for _ in range(REPEATS)]  # interleaved
    no_op, recording = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
    alone = no_op_calls_us()
    print(f"Telemetry through Service.execute_plan, {TASKS} zero-latency subtasks, median of {REPEATS}:")
    print(f"  no-op providers (no SDK)          {no_op:8.1f} us/subtask")
    print(f"  SDK recording, batch export       {recording:8.1f} us/subtask   x{recording / no_op:.2f} of no-op")
    print(f"  no-op telemetry calls alone       {alone:8.1f} us/subtask   {alone / no_op:.1%} of the no-op run")


if __name__ == "__main__":
    anyio.run(run)
