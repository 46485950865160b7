"""Trace context from the HTTP request to the agents (SPEC §10), OpenTelemetry API only.

The processes install the SDK and its exporter (`runtime.tracing`) when tracing is
configured; without it every call here is a no-op costing a few microseconds (no span
is recorded, nothing is injected), so the hot paths keep their cost.

Propagation: the W3C `traceparent` (and `tracestate`) of the span current when an
outbox row is written is stored in the row's `headers` (which travel as Kafka headers);
whoever publishes the row (after commit, or the relay later) does so in a `publish`
span that continues that context, and the consumer continues the publish span.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN, ProxyTracerProvider, Span, SpanKind

tracer = trace.get_tracer("nexus")
_OFF = contextlib.nullcontext(INVALID_SPAN)


def enabled() -> bool:
    """True once a process installed an SDK provider (`runtime.tracing`)."""
    return not isinstance(trace.get_tracer_provider(), ProxyTracerProvider)


def span(
    name: str,
    *,
    context: Context | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
) -> contextlib.AbstractContextManager[Span]:
    """`tracer.start_as_current_span`, or a shared do-nothing context when tracing is off
    (no context switch, no allocation: the hot paths pay one check)."""
    if not enabled():
        return _OFF
    return tracer.start_as_current_span(name, context=context, kind=kind, attributes=attributes)


# The header names the W3C propagator writes; anything else in a row's headers is ours.
TRACE_HEADERS = ("traceparent", "tracestate")


def inject(headers: dict[str, str], context: Context | None = None) -> dict[str, str]:
    """Write the current (or given) trace context into `headers`; returns `headers`."""
    if enabled():
        propagate.inject(headers, context=context)
    return headers


def extract(headers: Mapping[str, str]) -> Context:
    """The trace context carried by `headers` (an empty context when there is none, or
    when tracing is off)."""
    if not enabled():
        return Context()
    return propagate.extract(headers)


def from_kafka_headers(
    headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None,
) -> Context:
    """The trace context of a consumed Kafka message's headers."""
    if not headers:
        return Context()
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    carrier = {
        name: value.decode("latin-1") if isinstance(value, bytes) else str(value)
        for name, value in pairs
        if name in TRACE_HEADERS
    }
    return extract(carrier) if carrier else Context()


def publish_span(
    topic: str, parent: Context | None = None
) -> contextlib.AbstractContextManager[Span]:
    """A producer span for one message (child of `parent`, else of the current span); the
    headers injected inside it are what the consumer continues."""
    return span(
        f"publish {topic}",
        context=parent,
        kind=SpanKind.PRODUCER,
        attributes={"messaging.system": "kafka", "messaging.destination.name": topic},
    )
