"""OpenTelemetry spans and metrics of runs, plans, subagents and model calls, after the GenAI semantic conventions.

Only ``opentelemetry-api`` (which the MCP SDK already needs): with no SDK configured, every tracer
and meter is a no-op (a span costs microseconds: ``benchmarks/telemetry.py``). ``otel_export.py`` installs the SDK
when asked to. The tree a run leaves under the SDK's own ``tools/call`` span::

    tools/call orchestrate                     (mcp, SERVER)
      invoke_workflow orchestrate              one per run, kept by the server past the call
        plan                                   the planner's call(s)
          chat claude-...                      one per model call: usage, cache tokens, finish reasons
        invoke_agent researcher                one per subtask (gen_ai.agent.name = its role)
          chat claude-...                      (a repair turn is a second chat span)
        invoke_agent synthesizer
          chat claude-...

No prompt, output, error text or key ever becomes an attribute or a status description: spans
carry ids, roles, models, token counts, cost and low-cardinality error types only.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import anyio
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.metrics import Histogram, MeterProvider
from opentelemetry.trace import Span, SpanContext, SpanKind, StatusCode, Tracer, TracerProvider
from opentelemetry.util.types import AttributeValue

from . import __version__
from .contracts import OrchestrateResult, RunReport, SubagentResult, Usage
from .errors import ModelError

SCOPE = "subagent_mcp"
"""The instrumentation scope of every span and metric here."""

PROVIDER = "anthropic"

TOKEN_BUCKETS: Sequence[float] = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216)
"""``gen_ai.client.token.usage`` buckets, as the semantic conventions advise."""

DURATION_BUCKETS: Sequence[float] = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96)
"""``gen_ai.client.operation.duration`` buckets (seconds), as the semantic conventions advise."""

Attributes = dict[str, AttributeValue]


def error_type(exc: BaseException) -> str:
    """A low-cardinality name for what ended an operation: the HTTP status the API answered, else the error's class.

    ``cancelled`` for a cancellation (a stopped run, a timed-out subtask, a shutdown).
    """
    if isinstance(exc, anyio.get_cancelled_exc_class()):
        return "cancelled"
    if isinstance(exc, ModelError) and exc.status_code is not None:
        return str(exc.status_code)
    return type(exc).__name__


def usage_attributes(usage: Usage) -> Attributes:
    """``gen_ai.usage.*`` of ``usage``; input counts cache reads and writes, as the conventions ask for Anthropic."""
    return {
        "gen_ai.usage.input_tokens": usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens,
        "gen_ai.usage.output_tokens": usage.output_tokens,
        "gen_ai.usage.cache_read.input_tokens": usage.cache_read_tokens,
        "gen_ai.usage.cache_creation.input_tokens": usage.cache_write_tokens,
    }


def fail(span: Span, kind: str) -> None:
    """Mark ``span`` failed with ``error.type`` ``kind`` (the description is the type too: no message text)."""
    span.set_attribute("error.type", kind)
    span.set_status(StatusCode.ERROR, kind)


@dataclass(frozen=True)
class Telemetry:
    """The tracer and the two GenAI client histograms; build one with :meth:`of` (global providers by default)."""

    tracer: Tracer
    token_usage: Histogram
    duration: Histogram

    @classmethod
    def of(
        cls, tracer_provider: TracerProvider | None = None, meter_provider: MeterProvider | None = None
    ) -> Telemetry:
        """From the given providers, else the global ones (no-ops until an SDK installs real ones)."""
        tracer = trace.get_tracer(SCOPE, __version__, tracer_provider)
        meter = metrics.get_meter(SCOPE, __version__, meter_provider)
        return cls(
            tracer=tracer,
            token_usage=meter.create_histogram(
                "gen_ai.client.token.usage",
                unit="{token}",
                description="Number of input and output tokens used.",
                explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
            ),
            duration=meter.create_histogram(
                "gen_ai.client.operation.duration",
                unit="s",
                description="GenAI operation duration.",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
            ),
        )

    @contextmanager
    def _span(
        self, name: str, attributes: Attributes, kind: SpanKind = SpanKind.INTERNAL, parent: Context | None = None
    ) -> Generator[Span]:
        """A current span that records an escaping exception as ``error.type`` only (never its message)."""
        start = self.tracer.start_as_current_span
        with start(name, parent, kind, attributes, record_exception=False, set_status_on_exception=False) as span:
            try:
                yield span
            except BaseException as exc:
                fail(span, error_type(exc))
                raise

    @contextmanager
    def workflow(self, name: str, run_id: str, parent: Context | None) -> Generator[Span]:
        """One run (``execute``, ``orchestrate``, ``resume``), a child of ``parent``: the call that started it.

        A background run outlives that call; its span still nests under it, ending later.
        """
        attributes: Attributes = {
            "gen_ai.operation.name": "invoke_workflow",
            "gen_ai.workflow.name": name,
            "subagent_mcp.run.id": run_id,
        }
        with self._span(f"invoke_workflow {name}", attributes, parent=parent) as span:
            yield span

    @contextmanager
    def plan(self) -> Generator[Span]:
        """The planning step; the planner's model calls nest under it."""
        with self._span("plan", {"gen_ai.operation.name": "plan"}) as span:
            yield span

    @contextmanager
    def agent(self, role: str, task_id: str, model: str, parent: Context | None = None) -> Generator[Span]:
        """One subagent (a subtask, ``run_subagent``, the synthesis); see :func:`agent_result` for how it ended."""
        attributes: Attributes = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.provider.name": PROVIDER,
            "gen_ai.agent.name": role,
            "gen_ai.request.model": model,
            "subagent_mcp.task.id": task_id,
        }
        with self._span(f"invoke_agent {role}", attributes, parent=parent) as span:
            yield span

    @contextmanager
    def chat(self, model: str, max_tokens: int, label: str) -> Generator[Span]:
        """One model call (retries included), a CLIENT span; the caller records how it ended."""
        attributes: Attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": PROVIDER,
            "gen_ai.request.model": model,
            "gen_ai.request.max_tokens": max_tokens,
            "gen_ai.output.type": "json",
            "subagent_mcp.task.id": label,
        }
        with self._span(f"chat {model}", attributes, SpanKind.CLIENT) as span:
            yield span

    def record_call(
        self, request_model: str, response_model: str | None, usage: Usage, seconds: float, error: str | None
    ) -> None:
        """The two client metrics of one model call: billed tokens by type, and its duration."""
        common: Attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": PROVIDER,
            "gen_ai.request.model": request_model,
        }
        if response_model is not None:
            common["gen_ai.response.model"] = response_model
        if usage.total_tokens:
            billed_in = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
            self.token_usage.record(billed_in, {**common, "gen_ai.token.type": "input"})
            self.token_usage.record(usage.output_tokens, {**common, "gen_ai.token.type": "output"})
        self.duration.record(seconds, common if error is None else {**common, "error.type": error})


def agent_result(span: Span, result: SubagentResult) -> None:
    """What a subagent's result says on its span: status, model, usage of every attempt, cost; failed is an error."""
    if not span.is_recording():
        return
    spent(span, result.usage, result.cost_usd)
    span.set_attribute("subagent_mcp.task.status", result.status)
    if result.model:
        span.set_attribute("gen_ai.response.model", result.model)
    if result.status == "failed":
        fail(span, "subagent_failed")


def spent(span: Span, usage: Usage, cost: float) -> None:
    """A step's billed tokens (every call under it) and their cost, on its span."""
    if span.is_recording():
        span.set_attributes({**usage_attributes(usage), "subagent_mcp.cost_usd": cost})


def link_to_run(run: SpanContext | None, run_id: str) -> None:
    """Link the current span (a ``wait_run`` call, often a trace of its own) to the run it waits on."""
    current = trace.get_current_span()
    if run is not None and current.is_recording():
        current.add_link(run, {"subagent_mcp.run.id": run_id})


def run_ended(
    span: Span, outcome: RunReport | OrchestrateResult | None, stopped: str | None, error: Exception | None
) -> None:
    """How a run ended, on its span: status, usage and cost of everything in it; else why it has no outcome."""
    if isinstance(outcome, OrchestrateResult):
        spent(span, outcome.total.usage, outcome.total.cost_usd)
        span.set_attribute("subagent_mcp.run.status", outcome.report.status)
    elif outcome is not None:
        spent(span, outcome.usage, outcome.cost_usd)
        span.set_attribute("subagent_mcp.run.status", outcome.status)
    elif stopped is not None:
        fail(span, "cancelled" if stopped == "cancel" else "interrupted")
    elif error is not None:
        fail(span, error_type(error))
