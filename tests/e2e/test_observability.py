"""Logs and traces of a real stack (SPEC §10): API and agents as processes.

- JSON logs: with NEXUS_LOG_JSON=true every line either process writes to stderr is one
  JSON object (Faust's, mode's, aiokafka's and Hypercorn's lines included), none printed
  twice, and the API's line of a request and the agent's lines of the job it enqueued
  carry the same request and correlation ids.
- Tracing: with OTEL_EXPORTER_OTLP_ENDPOINT pointing at a receiver started here, one
  trace covers `POST /media/from_url`, the outbox row, the Kafka message and the agent's
  consume, job, fetch, extraction and completion, in parent/child order; when the API
  cannot publish, the relay's later publish continues the same trace.
"""

from __future__ import annotations

import io
import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from pypdf import PdfWriter

from nexus.config import Settings
from nexus.messaging.topics import Topics
from tests.conftest import TEST_INTERNAL_SECRET, make_settings
from tests.fetch.server import respond, serving
from tests.support.otlp import OtlpReceiver, ReceivedSpan
from tests.support.processes import Child, poll, start_agents, start_api
from tests.support.running import running
from tests.support.services import Broker, free_port
from tests.support.webapp import make_token

pytestmark = pytest.mark.e2e

PAGE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "article-pages"
PAGE_HTML = (PAGE / "bbc-1" / "source.html").read_bytes()
CALLER_TRACE, CALLER_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
CALLER = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


def observed_settings(db_url: str, broker: Broker, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "kafka_bootstrap": broker.bootstrap,
        "api_port": free_port(),
        "agents_web_port": free_port(),
        "fetch_allow_hosts": ["127.0.0.1"],
        "storage_dir": tmp_path / "storage",
        "log_json": True,
        **overrides,
    }
    return make_settings(**values)


async def save_and_settle(
    settings: Settings, url: str, headers: dict[str, str] | None = None, *, ready: bool = True
) -> dict[str, Any]:
    """POST /media/from_url as a new user; waits until the media is readable (or, with
    `ready=False`, has failed)."""
    wanted = "ready_for_reading" if ready else "failed"
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{settings.api_port}",
        headers={
            "Authorization": f"Bearer {make_token(uuid.uuid4())}",
            "X-Nexus-Internal": TEST_INTERNAL_SECRET,
            **(headers or {}),
        },
        timeout=30,
    ) as http:
        resp = await http.post("/media/from_url", json={"url": url})
        assert resp.status_code == 202, resp.text
        media_id = resp.json()["data"]["media_id"]

        async def settled() -> dict[str, Any] | None:
            media = (await http.get(f"/media/{media_id}")).json()["data"]
            if media["processing_status"] in ("ready_for_reading", "failed"):
                assert media["processing_status"] == wanted, media
                return media
            return None

        media: dict[str, Any] = await poll(settled, deadline_s=60, what=f"media {media_id}")
        return media


def damaged_pdf() -> bytes:
    """A PDF whose startxref points nowhere: pypdf recovers, and logs warnings about it
    (from the agents' extraction process)."""
    writer = PdfWriter()
    writer.add_blank_page(100, 100)
    out = io.BytesIO()
    writer.write(out)
    data = out.getvalue()
    return data[: data.rfind(b"startxref")] + b"startxref\n99\n%%EOF\n"


def json_lines(child: Child) -> list[dict[str, Any]]:
    """Every stderr line of a stopped child, parsed; fails on the first non-JSON line."""
    assert child.stderr_path is not None
    lines = child.stderr_path.read_text().splitlines()
    assert lines, f"{child.name} wrote nothing to stderr"
    parsed = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"{child.name} stderr line {number} is not JSON: {line[:300]!r}")
        assert isinstance(record, dict), line
        assert {"timestamp", "level", "logger", "event"} <= record.keys(), line
        parsed.append(record)
    twice = [line for line, n in Counter(lines).items() if n > 1]
    assert not twice, f"{child.name} printed lines twice: {twice[:3]}"
    return parsed


async def test_json_logs_carry_the_request_ids_from_api_to_agent(
    db_url: str, broker: Broker, logs_dir: Path, tmp_path: Path
) -> None:
    routes = {
        "/article": respond(200, PAGE_HTML, "text/html; charset=utf-8"),
        "/damaged.pdf": respond(200, damaged_pdf(), "application/pdf"),
    }
    settings = observed_settings(db_url, broker, tmp_path)
    request_id, correlation_id = f"req-{uuid.uuid4().hex}", f"corr-{uuid.uuid4().hex}"
    async with (
        serving(routes) as site,
        running(start_agents(settings, logs_dir, separate_stderr=True)) as agents,
        running(start_api(settings, logs_dir, separate_stderr=True)) as api,
    ):
        media = await save_and_settle(
            settings,
            site.url("/article"),
            {"X-Request-ID": request_id, "X-Correlation-ID": correlation_id},
        )
        # A blank page: no text, a failed job; pypdf warns while reading it.
        blank = await save_and_settle(settings, site.url("/damaged.pdf"), ready=False)
    api_lines, agent_lines = json_lines(api), json_lines(agents)

    # The API's access line of the request, with its ids.
    [access] = [
        r
        for r in api_lines
        if r["event"] == "http request" and r["method"] == "POST" and r["request_id"] == request_id
    ]
    assert access["correlation_id"] == correlation_id
    assert access["route"] == "/media/from_url" and access["status"] == 202
    # Hypercorn's own line is there, once, as JSON.
    assert (
        sum(r["logger"] == "hypercorn.error" and "Running on" in r["event"] for r in api_lines) == 1
    )

    # The agent's outcome line of the job the request enqueued: same ids, the job fields.
    outcomes = [r for r in agent_lines if r["logger"] == "nexus.jobs.worker"]
    [done] = [r for r in outcomes if r["event"] == "job completed"]
    assert (done["request_id"], done["correlation_id"]) == (request_id, correlation_id)
    assert done["level"] == "info" and done["outcome"] == "completed"
    assert done["job_type"] == "ingest" and done["job_key"] == f"media_id={media['id']}"
    assert done["attempt"] == 1 and done["duration_ms"] > 0 and done["worker_id"]
    [failed] = [r for r in outcomes if r["event"] == "job failed"]
    assert failed["job_key"] == f"media_id={blank['id']}" and failed["level"] == "info"
    assert failed["error_code"] == blank["last_error_code"] == "E_EXTRACTION_EMPTY"
    # Faust's, mode's and aiokafka's lines went through the same set-up, and so did the
    # extraction process's (pypdf's warnings).
    loggers = {r["logger"].split(".")[0] for r in agent_lines}
    assert {"faust", "mode", "aiokafka", "pypdf"} <= loggers, loggers
    assert all(r.get("worker_id") == done["worker_id"] for r in agent_lines)


def _parent(trace: list[ReceivedSpan], span: ReceivedSpan) -> ReceivedSpan:
    [parent] = [s for s in trace if s.span_id == span.parent_span_id]
    return parent


def _check_trace(trace: list[ReceivedSpan], topic: str) -> ReceivedSpan:
    """From the completed job up: job ← consume ← publish (returned); fetch, extraction
    and completion are the job's children. Every agent-side span is in this trace."""
    [job] = [
        s
        for s in trace
        if s.name == "job ingest" and s.attributes.get("nexus.job.outcome") == "completed"
    ]
    assert job.service == "nexus-agents"
    for name in ("fetch", "extract", "complete ingest"):
        [child] = [s for s in trace if s.name == name]
        assert child.service == "nexus-agents" and _parent(trace, child) == job
    consume = _parent(trace, job)
    assert (consume.service, consume.name) == ("nexus-agents", f"consume {topic}")
    publish = _parent(trace, consume)
    assert publish.name == f"publish {topic}"
    return publish


async def test_one_trace_from_request_to_ready_across_processes(
    db_url: str, broker: Broker, logs_dir: Path, tmp_path: Path
) -> None:
    routes = {
        "/direct": respond(200, PAGE_HTML, "text/html; charset=utf-8"),
        "/relayed": respond(200, PAGE_HTML + b"<!-- relayed -->", "text/html"),
    }
    with OtlpReceiver() as receiver:
        settings = observed_settings(
            db_url, broker, tmp_path, otel_exporter_otlp_endpoint=receiver.endpoint
        )
        # Export within 0.1 s instead of 5 s, so the spans arrive while the test waits.
        otel = {"OTEL_BSP_SCHEDULE_DELAY": "100"}
        # A second API whose broker is unreachable: its rows reach Kafka only through the
        # agents' outbox relay.
        cut_off = settings.model_copy(
            update={"api_port": free_port(), "kafka_bootstrap": "127.0.0.1:1"}
        )
        async with (
            serving(routes) as site,
            running(start_agents(settings, logs_dir, env=otel)),
            running(start_api(settings, logs_dir, env=otel)),
            running(start_api(cut_off, logs_dir, name="api-no-broker", env=otel)),
        ):
            await save_and_settle(settings, site.url("/direct"))
            # This request continues a trace started by its caller.
            await save_and_settle(cut_off, site.url("/relayed"), {"traceparent": CALLER})

            async def both_complete() -> list[ReceivedSpan] | None:
                spans = receiver.snapshot()
                done = [s for s in spans if s.name == "complete ingest"]
                return spans if len(done) == 2 else None

            spans = await poll(both_complete, deadline_s=30, what="the agents' spans")

    roots = [s for s in spans if s.name == "POST /media/from_url"]
    assert len(roots) == 2 and all(r.service == "nexus-api" for r in roots)
    # The HTTP span starts the trace, or continues the caller's.
    assert sorted((r.trace_id, r.parent_span_id) for r in roots if r.parent_span_id) == [
        (CALLER_TRACE, CALLER_SPAN)
    ]
    topic = Topics.from_settings(settings).ingest
    publishers = []
    for root in roots:
        trace = [s for s in spans if s.trace_id == root.trace_id]
        # (The client's later GETs, sent with the same traceparent, join the caller's
        # trace too: their spans are the request's siblings.)
        [transaction] = [
            s for s in trace if s.name == "transaction" and s.parent_span_id == root.span_id
        ]
        publish = _check_trace(trace, topic)
        publishers.append(publish.service)
        assert (publish.service == "nexus-agents") == (root.trace_id == CALLER_TRACE)
        if publish.service == "nexus-api":
            # Published right after commit, within the request.
            assert _parent(trace, publish) == root
        else:
            # Published later by the relay, continuing the context stored with the row.
            assert _parent(trace, publish) == transaction
    assert sorted(publishers) == ["nexus-agents", "nexus-api"]
