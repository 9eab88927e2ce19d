"""OTLP/HTTP export of the server's traces and metrics, when ``OTEL_EXPORTER_OTLP_ENDPOINT`` asks for it.

Needs the ``otel`` extra (``pip install 'subagent-mcp[otel]'``: the SDK and the OTLP/HTTP exporter);
without it the server says so once on stderr and serves untraced. Everything else comes from the
standard ``OTEL_*`` variables, read by the SDK itself (headers, timeout, sampler, batch sizes, the
export interval, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``); the service name defaults to
``subagent-mcp``. What is still buffered is flushed when the server stops.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Generator, Mapping
from contextlib import contextmanager

from . import __version__

log = logging.getLogger(__name__)

ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
SERVICE_NAME = "subagent-mcp"
MISSING_EXTRA = (
    f"{ENDPOINT} is set, but the OpenTelemetry SDK is not installed, so no traces or metrics are exported; "
    "install it with: pip install 'subagent-mcp[otel]'"
)


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for OTLP export (an endpoint, and the SDK not disabled)."""
    return bool(environ.get(ENDPOINT, "").strip()) and environ.get("OTEL_SDK_DISABLED", "").lower() != "true"


@contextmanager
def otlp_export() -> Generator[bool]:
    """Install global OTLP/HTTP tracer and meter providers for the block (if asked and possible), then flush them.

    Yields whether export is on. Never writes to stdout; a missing SDK is one warning, not an error.
    """
    environ = os.environ
    if not wanted(environ):
        yield False
        return
    try:
        from opentelemetry import metrics, trace
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning(MISSING_EXTRA)
        yield False
        return
    resource = Resource.create({"service.version": __version__})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):  # no OTEL_SERVICE_NAME
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    tracer_provider = TracerProvider(resource=resource)
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() != "none":
        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    readers = []
    if environ.get("OTEL_METRICS_EXPORTER", "otlp").strip().lower() != "none":
        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    meter_provider = MeterProvider(metric_readers=readers, resource=resource)
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    log.info("exporting traces and metrics over OTLP/HTTP (%s)", ENDPOINT)
    try:
        yield True
    finally:  # what the batch processor and the metric reader still hold goes out now
        tracer_provider.shutdown()
        meter_provider.shutdown()
