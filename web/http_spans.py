"""One server span per HTTP request (SPEC §10), installed by `create_app` only when tracing
is configured (no cost otherwise).

The span continues an incoming W3C `traceparent`, is current for the whole request (so
the transaction, the outbox rows it writes and the publish after commit are its
children) and ends at teardown, which Quart runs for every request, failed ones too.
"""

from __future__ import annotations

from opentelemetry import context, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from quart import Quart, Response, g, request

from nexus import tracing


def install(app: Quart) -> None:
    # First before_request hook: the spans of everything the request does are children.
    app.before_request_funcs.setdefault(None, []).insert(0, _start)
    app.after_request(_status)
    app.teardown_request(_end)


async def _start() -> None:
    rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
    span = tracing.tracer.start_span(
        f"{request.method} {rule}",
        context=tracing.extract({name.lower(): value for name, value in request.headers.items()}),
        kind=SpanKind.SERVER,
        attributes={
            "http.request.method": request.method,
            "http.route": rule,
            "url.path": request.path,
        },
    )
    g.nexus_span = span
    g.nexus_span_token = context.attach(trace.set_span_in_context(span))


async def _status(response: Response) -> Response:
    span = g.get("nexus_span")
    if span is not None:
        span.set_attribute("http.response.status_code", response.status_code)
        if response.status_code >= 500:
            span.set_status(Status(StatusCode.ERROR))
    return response


async def _end(exc: BaseException | None) -> None:
    span = g.pop("nexus_span", None)
    if span is None:
        return
    if exc is not None:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR))
    context.detach(g.pop("nexus_span_token"))
    span.end()
