"""OpenTelemetry SDK set-up of a process: spans exported over OTLP/HTTP, or nothing.

Tracing is on only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (`Settings.
otel_exporter_otlp_endpoint`): then a `TracerProvider` with a batching OTLP/HTTP exporter
to `<endpoint>/v1/traces` becomes the global provider. Otherwise nothing is installed
and `nexus.tracing`'s calls stay no-ops. The SDK's own environment variables apply
(`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`,
`OTEL_EXPORTER_OTLP_HEADERS`, ...). The service name is the process's (`nexus-api`,
`nexus-agents`). Spans still queued are flushed at exit.
"""

from __future__ import annotations

import logging

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from nexus.config import Settings

log = logging.getLogger(__name__)

_installed: list[TracerProvider] = []


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of a base endpoint (the standard `/v1/traces` path)."""
    return endpoint.rstrip("/") + "/v1/traces"


def configure_tracing(settings: Settings, service_name: str) -> TracerProvider | None:
    """Install the exporting provider once per process; None when tracing is off.

    The global provider can be set only once, so a second call (tests building several
    apps in one process) returns the provider already installed."""
    endpoint = settings.otel_exporter_otlp_endpoint
    if not endpoint:
        return None
    if _installed:
        return _installed[0]
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(endpoint))))
    trace.set_tracer_provider(provider)
    _installed.append(provider)
    log.info("tracing: exporting spans to %s", traces_url(endpoint))
    return provider
