"""Prometheus on both processes (SPEC §10) and the alert rules (issue 12.3, 12.6).

Real work through a real stack (API and agents processes, broker, PostgreSQL): an ingest
that completes, an ingest that fails after one retry, a backfill whose lease expired
(rescued, then completed) and an undecodable message. Both `/metrics` are scraped and the
counters and histograms must have moved by exactly what happened; the consumer lag gauge
must come back to 0. Requeues (HTTP, the requeue topic, a bulk operation) are counted by
the process whose transaction made them, once each. The alert rules pass `promtool check
rules` and their unit tests, and every metric they use is exported by one of the two
processes.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.config import Settings
from nexus.db.tx import transaction
from nexus.messaging.messages import BackfillRequeueRequested
from nexus.messaging.topics import Topics
from nexus.operators.service import create_key
from tests.conftest import TEST_INTERNAL_SECRET, make_settings
from tests.e2e.conftest import Stack
from tests.fetch.server import LocalServer, respond
from tests.support import factories as f
from tests.support.kafka import produce
from tests.support.processes import poll, start_agents, start_api
from tests.support.services import Broker, free_port
from tests.support.webapp import make_token

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "compose" / "prometheus" / "alerts.yml"
PAGE = (ROOT.parent / "shared" / "data" / "article-pages" / "bbc-1" / "source.html").read_bytes()

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def promtool() -> str:
    """The promtool `scripts/install.sh` put beside the virtualenv's Python."""
    path = Path(sys.executable).parent / "promtool"
    if not path.exists():
        path = ROOT / ".venv" / "bin" / "promtool"
    assert path.exists(), "promtool missing: run scripts/install.sh"
    return str(path)


async def scrape(url: str) -> tuple[Samples, set[str]]:
    """(sample values by name and labels, every exported name) of one /metrics."""
    async with httpx.AsyncClient(timeout=10) as client:
        resp = await client.get(url)
    assert resp.status_code == 200, resp.text
    samples: Samples = {}
    names: set[str] = set()
    for family in text_string_to_metric_families(resp.text):
        names.add(family.name)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        for sample in family.samples:
            names.add(sample.name)
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples, names


def value(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


async def test_both_processes_count_real_work(
    db_url: str,
    broker: Broker,
    logs_dir: Path,
    tmp_path: Path,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    site = LocalServer()
    site.routes["/article"] = respond(200, PAGE, "text/html; charset=utf-8")
    site.routes["/down"] = respond(503, b"down", "text/plain")
    await site.start()
    settings = make_settings(
        database_url=db_url,
        kafka_bootstrap=broker.bootstrap,
        api_port=free_port(),
        agents_web_port=free_port(),
        fetch_allow_hosts=["127.0.0.1"],
        storage_dir=tmp_path / "storage",
        ingest_retry_delays=(0.2,),  # the failing page: one retry, then failed
        backfill_retry_delays=(0.2, 0.4),
        scheduler_interval_seconds=0.3,
        rescue_interval_seconds=0.5,
        metrics_db_cache_seconds=0,
    )
    topics = Topics.from_settings(settings)
    # A backfill job whose worker vanished: its lease expired a minute ago.
    async with transaction(sessionmaker) as s:
        sc = await f.sharing_scenario(s, n_media=3)
        await f.backfill_job(
            s,
            sc["d"],
            sc["s"],
            sc["viewer"],
            status="running",
            attempts=1,
            lease_token=uuid.uuid4(),
            lease_owner="gone-1-abc",
            lease_expires_at=datetime.now(UTC) - timedelta(minutes=1),
        )
    agents = await start_agents(settings, logs_dir)
    api = await start_api(settings, logs_dir)
    agents_url = f"http://127.0.0.1:{settings.agents_web_port}/metrics"
    api_url = f"http://127.0.0.1:{settings.api_port}/metrics"
    try:
        ready = await _save(settings, site.url("/article"))
        failed = await _save(settings, site.url("/down"))
        await produce(settings.kafka_bootstrap, topics.backfill, b"{not json")
        await _settled(settings, ready, "ready_for_reading")
        await _settled(settings, failed, "failed")

        async def backfill_done() -> bool:
            async with sessionmaker() as s:
                status = await s.scalar(
                    text("SELECT status FROM default_library_backfill_jobs WHERE user_id = :u"),
                    {"u": sc["viewer"]},
                )
            return status == "completed"

        await poll(backfill_done, deadline_s=60, what="the rescued backfill completed")

        expected = {
            ("ingest", "pending", "running"): 3,
            ("ingest", "running", "completed"): 1,
            ("ingest", "running", "pending"): 1,
            ("ingest", "running", "failed"): 1,
            ("backfill", "running", "pending"): 1,
            ("backfill", "pending", "running"): 1,
            ("backfill", "running", "completed"): 1,
        }

        async def counted() -> Samples | None:
            samples, _ = await scrape(agents_url)
            got = {
                key: value(
                    samples,
                    "nexus_job_transitions_total",
                    job_type=key[0],
                    **{"from": key[1], "to": key[2]},
                )
                for key in expected
            }
            lags = [v for (n, _), v in samples.items() if n == "nexus_consumer_lag"]
            settled = got == expected and lags and not any(lags)
            return samples if settled else None

        # The lag gauge comes back to 0 once everything was consumed and committed.
        agent_samples = await poll(counted, deadline_s=60, interval=0.5, what="the counters")
        api_samples, api_names = await scrape(api_url)
        _, agent_names = await scrape(agents_url)
    finally:
        api.stop()
        agents.stop()
        await site.stop()

    a = agent_samples
    # Job attempts: one histogram observation per attempt, by outcome.
    assert value(a, "nexus_job_run_seconds_count", job_type="ingest") == 3
    assert value(a, "nexus_job_run_seconds_count", job_type="ingest", outcome="completed") == 1
    assert (
        value(a, "nexus_job_run_seconds_count", job_type="ingest", outcome="retry_scheduled") == 1
    )
    assert value(a, "nexus_job_run_seconds_count", job_type="ingest", outcome="failed") == 1
    assert value(a, "nexus_job_run_seconds_sum", job_type="ingest") > 0
    assert value(a, "nexus_job_run_seconds_count", job_type="backfill") == 1
    # The wait before each claim; the rescued job waited its retry delay at least.
    assert value(a, "nexus_job_queue_seconds_count", job_type="ingest") == 3
    assert value(a, "nexus_job_queue_seconds_count", job_type="backfill") == 1
    assert value(a, "nexus_job_queue_seconds_bucket", job_type="backfill", le="+Inf") == 1
    assert value(a, "nexus_job_retries_total", job_type="ingest") == 1
    assert value(a, "nexus_job_retries_total", job_type="backfill") == 0
    assert value(a, "nexus_job_rescues_total", job_type="backfill") == 1
    assert value(a, "nexus_job_rescues_total", job_type="ingest") == 0
    assert value(a, "nexus_dead_letters_total", topic=topics.backfill) == 1
    assert value(a, "nexus_dead_letters_total", topic=topics.ingest) == 0
    # Database gauges (cache off here): jobs by type and status, workers, outbox.
    assert value(a, "nexus_jobs", job_type="ingest", status="completed") == 1
    assert value(a, "nexus_jobs", job_type="ingest", status="failed") == 1
    assert value(a, "nexus_jobs", job_type="backfill", status="completed") == 1
    assert value(a, "nexus_jobs", job_type="operation", status="pending") == 0
    assert value(a, "nexus_workers_alive") == 1
    assert value(a, "nexus_outbox_parked") == 0
    # Lag: one series per assigned partition of every consumed topic, all back to 0.
    lag_topics = {dict(ls)["topic"] for (n, ls) in a if n == "nexus_consumer_lag"}
    assert {topics.ingest, topics.backfill} <= lag_topics

    # The API: its request series and the jobs it created.
    http = {"method": "POST", "route": "/media/from_url", "status": "202"}
    assert value(api_samples, "nexus_http_requests_total", **http) == 2
    assert value(api_samples, "nexus_http_request_duration_seconds_count", **http) == 2
    created = {"job_type": "ingest", "from": "none", "to": "pending"}
    assert value(api_samples, "nexus_job_transitions_total", **created) == 2
    for samples in (a, api_samples):
        assert value(samples, "nexus_db_pool_size") > 0
        assert ("nexus_db_pool_checked_out", frozenset()) in samples
        assert ("nexus_db_pool_overflow", frozenset()) in samples
        assert value(samples, "process_resident_memory_bytes") > 0

    # Every metric an alert uses is exported by one of the processes.
    used = set(re.findall(r"\bnexus_[a-z0-9_]+\b", ALERTS.read_text()))
    assert used, "no metric found in alerts.yml"
    assert used <= api_names | agent_names, sorted(used - api_names - agent_names)


async def _save(settings: Settings, url: str) -> str:
    async with _client(settings) as http:
        resp = await http.post("/media/from_url", json={"url": url})
    assert resp.status_code == 202, resp.text
    return str(resp.json()["data"]["media_id"])


async def _settled(settings: Settings, media_id: str, wanted: str) -> None:
    async with _client(settings) as http:

        async def done() -> dict[str, Any] | None:
            media = (await http.get(f"/media/{media_id}")).json()["data"]
            return media if media["processing_status"] == wanted else None

        await poll(done, deadline_s=60, interval=0.2, what=f"media {media_id} {wanted}")


_USER = uuid.uuid4()


def _client(settings: Settings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{settings.api_port}",
        headers={
            "Authorization": f"Bearer {make_token(_USER)}",
            "X-Nexus-Internal": TEST_INTERNAL_SECRET,
        },
        timeout=30,
    )


def transitions(samples: Samples) -> dict[tuple[str, str, str], float]:
    """`nexus_job_transitions_total` of one scrape, by (job_type, from, to)."""
    out = {}
    for (name, labels), v in samples.items():
        if name == "nexus_job_transitions_total":
            ls = dict(labels)
            out[(ls["job_type"], ls["from"], ls["to"])] = v
    return out


async def test_requeues_are_counted_by_the_process_that_commits_them(
    stack: Stack, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """HTTP requeue (failed, cancelled) and the bulk request are counted by the API; a
    requeue-topic message and the bulk operation's per-job resets by the agents, each
    once, by the status the job left; every requeued job then runs to completion."""
    settings = stack.settings
    old = datetime.now(UTC) - timedelta(minutes=5)

    async def job(s: AsyncSession, status: str, code: str | None = None) -> dict[str, str]:
        sc = await f.sharing_scenario(s, n_media=1)
        finished = None if status == "pending" else old
        key = await f.backfill_job(
            s,
            sc["d"],
            sc["s"],
            sc["viewer"],
            status=status,
            attempts=1,
            last_error_code=code,
            finished_at=finished,
            updated_at=old,
        )
        return {k: str(v) for k, v in key.items()}

    async with transaction(sessionmaker) as s:
        failed = await job(s, "failed", "E_FETCH_FAILED")
        cancelled = await job(s, "cancelled", "E_CANCELLED")
        completed = await job(s, "completed")
        for status in ("failed", "failed", "cancelled"):
            await job(s, status, "E_BULK_ME")
        operator = (await create_key(s, name="m-operator", role="operator")).token
        admin = (await create_key(s, name="m-admin", role="admin")).token

    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http:
        for key in (failed, cancelled):
            r = await http.post(
                "/internal/libraries/backfill-jobs/requeue", json=key, headers=_operator(operator)
            )
            assert r.status_code == 200 and r.json()["data"]["idempotent"] is False, r.text
        r = await http.post(
            "/internal/libraries/backfill-jobs/requeue-bulk",
            json={"error_code": "E_BULK_ME", "dry_run": False, "rate_per_second": 1000},
            headers=_operator(admin),
        )
        assert r.status_code == 202, r.text
    message = BackfillRequeueRequested(
        **{k: uuid.UUID(v) for k, v in completed.items()}, requested_by="e2e"
    )
    await produce(
        settings.kafka_bootstrap,
        Topics.from_settings(settings).backfill_requeue,
        message.model_dump_json().encode(),
    )

    agents_url = f"http://127.0.0.1:{settings.agents_web_port}/metrics"
    expected_agents = {
        ("backfill", "completed", "pending"): 1,  # the topic's requeue
        ("backfill", "failed", "pending"): 2,  # the bulk operation's steps
        ("backfill", "cancelled", "pending"): 1,
        ("operation", "pending", "running"): 1,
        ("operation", "running", "completed"): 1,
        # Every requeued job ran: 2 over HTTP, 1 over the topic, 3 in bulk.
        ("backfill", "pending", "running"): 6,
        ("backfill", "running", "completed"): 6,
    }

    seen: dict[tuple[str, str, str], float] = {}

    async def settled() -> bool:
        seen.clear()
        seen.update(transitions((await scrape(agents_url))[0]))
        return seen == expected_agents

    with contextlib.suppress(TimeoutError):
        await poll(settled, deadline_s=90, interval=0.5, what="the agents' transitions")
    assert seen == expected_agents
    api_samples, _ = await scrape(f"{stack.base_url}/metrics")
    assert transitions(api_samples) == {
        ("backfill", "failed", "pending"): 1,
        ("backfill", "cancelled", "pending"): 1,
        ("operation", "none", "pending"): 1,
    }
    async with sessionmaker() as s:
        statuses = await s.scalars(text("SELECT status FROM default_library_backfill_jobs"))
        assert sorted(statuses) == ["completed"] * 6


def _operator(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "X-Nexus-Internal": TEST_INTERNAL_SECRET}


def test_alert_rules_pass_promtool() -> None:
    checked = subprocess.run(
        [promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout
    tested = subprocess.run(
        [promtool(), "test", "rules", str(ALERTS.with_name("alerts_test.yml"))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
