"""The one logging set-up (runtime.logs): JSON lines, fields, exceptions, no duplicates."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from hypercorn.config import Config
from opentelemetry.sdk.trace import TracerProvider

from runtime.logs import configure_logging
from tests.conftest import make_settings


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """Our handler writes here; the root logger is restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out = io.StringIO()
    try:
        yield out
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.captureWarnings(False)
        structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_stdlib_lines_keep_extra_and_render_exceptions_as_text(stream: io.StringIO) -> None:
    configure_logging(make_settings(log_json=True), fields={"worker_id": "w-1"}, stream=stream)
    try:
        raise ValueError("bad page")
    except ValueError:
        logging.getLogger("nexus.test").exception("work raised", extra={"job_type": "ingest"})
    [line] = lines(stream)
    assert line["event"] == "work raised" and line["logger"] == "nexus.test"
    assert line["level"] == "error" and line["timestamp"].endswith("Z")
    assert line["job_type"] == "ingest" and line["worker_id"] == "w-1"
    assert "Traceback (most recent call last)" in line["exception"]
    assert "ValueError: bad page" in line["exception"]
    assert "<traceback object" not in stream.getvalue()


def test_bound_ids_and_the_current_trace_are_fields(stream: io.StringIO) -> None:
    configure_logging(make_settings(log_json=True), stream=stream)
    tracer = TracerProvider().get_tracer("test")
    with (
        structlog.contextvars.bound_contextvars(request_id="r-1", correlation_id="c-1"),
        tracer.start_as_current_span("work") as span,
    ):
        structlog.get_logger("nexus.web").info("structlog line", status=202)
        logging.getLogger("aiokafka").warning("library line %s", "x")
    ours, theirs = lines(stream)
    trace_id = format(span.get_span_context().trace_id, "032x")
    for line in (ours, theirs):
        assert (line["request_id"], line["correlation_id"]) == ("r-1", "c-1")
        assert line["trace_id"] == trace_id
    assert ours["status"] == 202 and theirs["event"] == "library line x"


def test_configuring_again_or_after_a_library_never_duplicates(stream: io.StringIO) -> None:
    settings = make_settings(log_json=True)
    configure_logging(settings, stream=stream)
    # What Faust's start (mode) and basicConfig do: a plain console handler on the root.
    logging.getLogger().addHandler(logging.StreamHandler(io.StringIO()))
    configure_logging(settings, stream=stream)
    logging.getLogger("faust.worker").info("Ready")
    assert [line["event"] for line in lines(stream)] == ["Ready"]


async def test_hypercorn_lines_are_printed_once_through_ours(stream: io.StringIO) -> None:
    configure_logging(make_settings(log_json=True), stream=stream)
    config = Config.from_object("web.serving.hypercorn")
    await config.log.info("Running on http://127.0.0.1:1")
    assert not logging.getLogger("hypercorn.error").handlers
    [line] = lines(stream)
    assert line["logger"] == "hypercorn.error" and line["event"].startswith("Running on")
