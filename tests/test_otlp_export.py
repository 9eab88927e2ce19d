"""OTLP/HTTP export: the console script, started as a host starts it, hands its spans to a collector when it stops."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from anyio.abc import ByteReceiveStream, SocketAttribute, SocketStream, TaskStatus
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from subagent_mcp.otel_export import ENDPOINT, MISSING_EXTRA, otlp_export
from subagent_mcp.settings import Settings
from subagent_mcp.testing import serve_fake_anthropic
from subagent_mcp.testing._http11 import CLOSED, read_request, response_head
from subagent_mcp.testing.results import text_of

pytestmark = [pytest.mark.anyio, pytest.mark.subprocess]

KEY = "sk-ant-test-SECRET-otlp-0451"
SCRIPT = Path(sys.executable).with_name("subagent-mcp")


def value_of(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(value_of(v) for v in value.array_value.values)
    return getattr(value, kind) if kind else None


def attributes_of(pairs: Any) -> dict[str, Any]:
    return {pair.key: value_of(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


class Collector:
    """A minimal OTLP/HTTP receiver: decodes what is posted to /v1/traces and /v1/metrics, answers 200."""

    def __init__(self) -> None:
        self.endpoint = ""
        self.spans: list[Span] = []
        self.resources: list[dict[str, Any]] = []
        self.metric_names: set[str] = set()
        self.traced = anyio.Event()

    async def run(self, *, task_status: TaskStatus[str] = anyio.TASK_STATUS_IGNORED) -> None:
        async with await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0) as listener:
            task_status.started(f"http://127.0.0.1:{listener.extra(SocketAttribute.local_port)}")
            await listener.serve(self.serve)

    async def serve(self, stream: SocketStream) -> None:
        buffer = bytearray()
        async with stream:
            try:
                while (parsed := await read_request(stream, buffer)) is not None:
                    _method, path, _headers, raw = parsed
                    self.take(path, raw)
                    await stream.send(response_head(200, {}, 0, close=False))
            except CLOSED:
                return

    def take(self, path: str, raw: bytes) -> None:
        if path == "/v1/traces":
            request = ExportTraceServiceRequest.FromString(raw)
            for resource_spans in request.resource_spans:
                self.resources.append(attributes_of(resource_spans.resource.attributes))
                self.spans += [span for scope in resource_spans.scope_spans for span in scope.spans]
            self.traced.set()
        elif path == "/v1/metrics":
            metrics = ExportMetricsServiceRequest.FromString(raw)
            self.metric_names |= {
                metric.name
                for resource_metrics in metrics.resource_metrics
                for scope in resource_metrics.scope_metrics
                for metric in scope.metrics
            }


@asynccontextmanager
async def collector() -> AsyncGenerator[Collector]:
    receiver = Collector()
    async with anyio.create_task_group() as tg:
        receiver.endpoint = await tg.start(receiver.run)
        yield receiver
        tg.cancel_scope.cancel()


async def test_the_stdio_server_sends_its_spans_and_metrics_to_the_collector_as_it_stops(tmp_path: Path) -> None:
    assert SCRIPT.exists(), f"console script not installed at {SCRIPT}; pip install -e . first"
    model = Settings().model_for_role("writer")
    async with serve_fake_anthropic(api_key=KEY) as fake, collector() as otlp:
        env = {
            "ANTHROPIC_API_KEY": KEY,
            "ANTHROPIC_BASE_URL": fake.base_url,
            "SUBAGENT_MCP_ALLOW_REMOTE_MODEL": "0",
            "SUBAGENT_MCP_DB_PATH": str(tmp_path / "runs.db"),
            ENDPOINT: otlp.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "600000",  # nothing leaves before the shutdown's flush
            "OTEL_METRIC_EXPORT_INTERVAL": "600000",
        }
        params = StdioServerParameters(command=str(SCRIPT), args=[], env=env, cwd=str(tmp_path))
        with (tmp_path / "stderr.log").open("w") as errlog:
            async with Client(stdio_client(params, errlog=errlog)) as client:
                with anyio.fail_after(30):
                    result = await client.call_tool("run_subagent", {"role": "writer", "instructions": "Write it"})
                assert otlp.spans == []  # still in the server's batch
        with anyio.fail_after(10):  # the server has exited: its flush is on the way, if not already in
            await otlp.traced.wait()
    assert not result.is_error, text_of(result)
    spans = {span.name: span for span in otlp.spans}
    assert {"tools/call run_subagent", "invoke_agent writer", f"chat {model}"} <= set(spans)
    call, agent, chat = spans["tools/call run_subagent"], spans["invoke_agent writer"], spans[f"chat {model}"]
    assert (agent.parent_span_id, chat.parent_span_id) == (call.span_id, agent.span_id)
    assert len({call.trace_id, agent.trace_id, chat.trace_id}) == 1
    (bill,) = fake.billed
    attributes = attributes_of(chat.attributes)
    assert attributes["gen_ai.usage.input_tokens"] == bill.input_tokens + bill.cache_read_tokens
    assert attributes["gen_ai.usage.output_tokens"] == bill.output_tokens
    assert attributes["gen_ai.provider.name"] == "anthropic"
    assert all(resource["service.name"] == "subagent-mcp" for resource in otlp.resources)
    assert {"gen_ai.client.token.usage", "gen_ai.client.operation.duration"} <= otlp.metric_names
    assert KEY not in (tmp_path / "stderr.log").read_text()


async def banner_url(stderr: ByteReceiveStream) -> str:
    """The MCP URL ``serve --http`` prints on stderr once it listens."""
    seen = b""
    while b"/mcp" not in seen or not seen.endswith(b"\n"):
        seen += await stderr.receive()
    return next(word for word in seen.decode().split() if word.startswith("http://127.0.0.1:"))


async def test_the_http_server_stopped_by_ctrl_c_sends_its_spans_too(tmp_path: Path) -> None:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    async with collector() as otlp:
        env = {
            **keep,
            "SUBAGENT_MCP_DB_PATH": str(tmp_path / "runs.db"),
            ENDPOINT: otlp.endpoint,
            "OTEL_SERVICE_NAME": "team-orchestrator",
            "OTEL_BSP_SCHEDULE_DELAY": "600000",
        }
        command = [str(SCRIPT), "serve", "--demo", "--http", "--port", "0"]
        async with await anyio.open_process(command, env=env, cwd=tmp_path) as process:
            assert process.stderr is not None
            with anyio.fail_after(20):
                url = await banner_url(process.stderr)
            async with (
                httpx2.AsyncClient(timeout=10) as http,
                Client(streamable_http_client(url, http_client=http)) as client,
            ):
                with anyio.fail_after(20):
                    result = await client.call_tool("run_subagent", {"role": "writer", "instructions": "Write it"})
            assert otlp.spans == []
            process.send_signal(signal.SIGINT)
            with anyio.fail_after(20):
                await otlp.traced.wait()
                assert await process.wait() == 0
    assert not result.is_error, text_of(result)
    names = {span.name for span in otlp.spans}
    assert {"tools/call run_subagent", "invoke_agent writer"} <= names
    assert any(name.startswith("chat ") for name in names)
    assert all(resource["service.name"] == "team-orchestrator" for resource in otlp.resources)  # OTEL_* honoured


def test_with_an_endpoint_but_without_the_sdk_the_server_says_so_once_and_serves_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(ENDPOINT, "http://127.0.0.1:9")
    for name in [n for n in sys.modules if n.startswith(("opentelemetry.sdk", "opentelemetry.exporter"))]:
        monkeypatch.setitem(sys.modules, name, None)  # as if the otel extra were not installed
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk", None)
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter", None)
    caplog.set_level(logging.INFO)
    with otlp_export() as exporting:
        assert exporting is False
    assert [r.getMessage() for r in caplog.records] == [MISSING_EXTRA]


async def test_a_run_from_the_terminal_sends_its_spans_and_metrics_when_it_ends(tmp_path: Path) -> None:
    async with collector() as otlp:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "SUBAGENT_MCP_", "OTEL_"))},
            "SUBAGENT_MCP_DB_PATH": str(tmp_path / "runs.db"),
            ENDPOINT: otlp.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "600000",  # nothing leaves before the exit's flush
            "OTEL_METRIC_EXPORT_INTERVAL": "600000",
        }
        done = await anyio.run_process([str(SCRIPT), "run", "--demo", "Pick a database"], env=env, check=False)
        with anyio.fail_after(10):  # the process has exited: its flush is on the way, if not already in
            await otlp.traced.wait()
    assert done.returncode == 0, done.stderr.decode()
    names = {span.name for span in otlp.spans}
    assert {"plan", "invoke_agent synthesizer"} <= names, names
    assert any(name.startswith("invoke_agent researcher") for name in names), names
    assert {"gen_ai.client.token.usage", "gen_ai.client.operation.duration"} <= otlp.metric_names
