"""A small OTLP/HTTP trace receiver for tests and benchmarks (protobuf, `/v1/traces`).

Runs `http.server` in a thread on 127.0.0.1 and decodes each export request with the
`opentelemetry-proto` messages; every span received is kept as a `ReceivedSpan`.
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass
from email.message import Message
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.support.http_server import Answer, LocalHttpServer


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: int
    attributes: dict[str, Any]


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def decode(body: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        service=str(resource.get("service.name", "")),
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex() or None,
                        name=span.name,
                        kind=span.kind,
                        attributes={a.key: _value(a.value) for a in span.attributes},
                    )
                )
    return spans


class OtlpReceiver(LocalHttpServer):
    """`with OtlpReceiver() as receiver:` → `receiver.endpoint` for OTEL_EXPORTER_OTLP_ENDPOINT.

    With `decode=False` requests are only counted (`requests`, `bytes`): a benchmark's
    receiver, whose CPU would otherwise be charged to the system under test."""

    def __init__(self, *, decode: bool = True) -> None:
        super().__init__()
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self.bytes = 0
        self._decode = decode
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return self.base_url

    def on_post(self, path: str, headers: Message, body: bytes) -> Answer:
        if headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        ok = path == "/v1/traces"
        if ok:
            self._add(body)
        reply = ExportTraceServiceResponse().SerializeToString()
        return (200 if ok else 404), {"Content-Type": "application/x-protobuf"}, reply

    def _add(self, body: bytes) -> None:
        spans = decode(body) if self._decode else []
        with self._lock:
            self.spans.extend(spans)
            self.requests += 1
            self.bytes += len(body)

    def snapshot(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)
