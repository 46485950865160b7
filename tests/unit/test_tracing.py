"""Tracing set-up and propagation helpers (the end-to-end trace is tests/e2e)."""

from __future__ import annotations

import pytest
from opentelemetry import trace

from nexus import tracing
from nexus.config import Settings
from runtime.tracing import configure_tracing, traces_url
from tests.conftest import make_settings

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_off_without_an_endpoint_and_then_free() -> None:
    assert configure_tracing(make_settings(), "nexus-test") is None
    assert not tracing.enabled()
    # Nothing is written into headers, and spans are one shared null context.
    assert tracing.inject({"message_id": "m"}) == {"message_id": "m"}
    assert tracing.span("a") is tracing.span("b")
    carried = {"traceparent": PARENT}
    assert not trace.get_current_span(tracing.extract(carried)).get_span_context().is_valid
    with tracing.span("work") as span:
        assert not span.is_recording()


def test_the_endpoint_is_the_standard_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    settings = Settings(env="test")  # type: ignore[arg-type]
    assert settings.otel_exporter_otlp_endpoint == "http://collector:4318/"
    assert traces_url(settings.otel_exporter_otlp_endpoint) == "http://collector:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")
    with pytest.raises(ValueError, match="http"):
        Settings(env="test")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "headers",
    [
        {"traceparent": PARENT.encode(), "message_id": b"m"},
        [("message_id", b"m"), ("traceparent", PARENT.encode())],
    ],
)
def test_a_consumed_messages_traceparent_is_continued(
    headers: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As in a process that installed the SDK (this one must not: the provider is global).
    monkeypatch.setattr(tracing, "enabled", lambda: True)
    context = tracing.from_kafka_headers(headers)  # type: ignore[arg-type]
    parent = trace.get_current_span(context).get_span_context()
    assert format(parent.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert format(parent.span_id, "016x") == "b7ad6b7169203331" and parent.is_remote


def test_a_message_without_trace_context_starts_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "enabled", lambda: True)
    for headers in (None, {}, {"message_id": b"m"}):
        context = tracing.from_kafka_headers(headers)
        assert not trace.get_current_span(context).get_span_context().is_valid
