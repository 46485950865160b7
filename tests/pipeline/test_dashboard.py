"""The SREs' dashboard in a real browser against a real stack (broker, Faust worker,
Postgres): headless Chromium loads `/nexus/dashboard`, runs its script for a few refreshes
and the DOM is checked.

The stack has done real work: one backfill completed, one failed for real (its tuple names
a library that is not a default library: E_BACKFILL_TUPLE_INVALID), and one is held in the
middle of its run by a membership lock this test keeps, so the job queued behind it on the
same partition is pending (backlog) and its message unread (lag).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.config import Settings
from nexus.db.tx import transaction
from nexus.messaging.topics import Topics
from nexus.sharing import backfill
from tests.support import factories as f
from tests.support.browser import dump_dom
from tests.support.locks import lock_waiters
from tests.support.processes import Child, poll, start_agents

SM = async_sessionmaker[AsyncSession]


@pytest_asyncio.fixture
async def dash_settings(pipeline_settings: Settings) -> Settings:
    # A job is held on purpose for a while: its lease must outlast the test. Stats are
    # refreshed often so the polls below see changes quickly.
    return pipeline_settings.model_copy(
        update={"lease_seconds": 300.0, "metrics_db_cache_seconds": 0.5}
    )


@pytest_asyncio.fixture
async def worker(dash_settings: Settings, logs_dir: Path) -> AsyncIterator[Child]:
    child = await start_agents(dash_settings, logs_dir)
    try:
        yield child
    finally:
        child.stop()


async def _requeue(sm: SM, topics: Topics, key: backfill.BackfillKey) -> None:
    """A job row requeued like an operator would: pending, a ledger row and its outbox
    message (which the leader's relay publishes)."""
    async with transaction(sm) as s:
        await f.backfill_job(s, *key.as_dict().values(), status="failed", finished_at=now())
    async with transaction(sm) as s:
        await backfill.requeue(s, key, topics, actor="test", request_id=None, correlation_id=None)


async def _status(sm: SM, key: backfill.BackfillKey) -> str | None:
    async with sm() as s:
        return await s.scalar(
            text(
                "SELECT status FROM default_library_backfill_jobs WHERE default_library_id = :d "
                "AND source_library_id = :s AND user_id = :u"
            ),
            {"d": key.default_library_id, "s": key.source_library_id, "u": key.user_id},
        )


async def _stats(base: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as client:
        resp = await client.get(f"{base}/nexus/stats")
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def now() -> datetime:
    return datetime.now(UTC)


def _series(dom: Any, chart: str) -> dict[str, float]:
    lines = dom.xpath(f'//*[@id="chart-{chart}"]/*[local-name()="polyline"]')
    return {line.get("data-name"): float(line.get("data-last")) for line in lines}


async def test_dashboard_charts_live_data_and_lists_a_job_that_really_failed(
    dash_settings: Settings, sessionmaker: SM, worker: Child
) -> None:
    topics = Topics.from_settings(dash_settings)
    base = f"http://127.0.0.1:{dash_settings.agents_web_port}"
    async with transaction(sessionmaker) as s:
        sc = await f.sharing_scenario(s, n_media=3)
        held_source = await f.library(s, sc["owner"])
        queued_source = await f.library(s, sc["owner"])
        for lib in (held_source, queued_source):
            await f.member(s, lib, sc["viewer"])
    viewer, d = sc["viewer"], sc["d"]
    done = backfill.BackfillKey(d, sc["s"], viewer)
    # The "default library" of this tuple is a shared one: the worker refuses it.
    broken = backfill.BackfillKey(sc["s"], held_source, viewer)
    for key in (done, broken):
        await _requeue(sessionmaker, topics, key)
    await poll(lambda: _status(sessionmaker, done), what="completed", deadline_s=60)
    await poll(
        lambda: _is(sessionmaker, broken, "failed"), what="invalid tuple failed", deadline_s=60
    )
    assert await _status(sessionmaker, done) == "completed"

    held = backfill.BackfillKey(d, held_source, viewer)
    queued = backfill.BackfillKey(d, queued_source, viewer)  # same default library: same partition
    async with sessionmaker() as blocker:
        await blocker.begin()
        await blocker.execute(
            text("SELECT 1 FROM memberships WHERE library_id = :s AND user_id = :u FOR UPDATE"),
            {"s": held_source, "u": viewer},
        )
        try:
            await _requeue(sessionmaker, topics, held)

            async def blocked() -> bool:
                return await lock_waiters(sessionmaker) >= 1

            await poll(blocked, what="the held job waiting on the membership lock", deadline_s=60)
            await _requeue(sessionmaker, topics, queued)

            async def backlogged() -> dict[str, Any] | None:
                stats = await _stats(base)
                lag = sum(p["lag"] or 0 for p in stats["lag"] if p["topic"] == topics.backfill)
                pending = stats["backlog"]["backfill"]["pending_count"]
                return stats if lag >= 1 and pending >= 1 else None

            stats = await poll(backlogged, what="lag and a pending backlog", deadline_s=60)
            dom = await dump_dom(f"{base}/nexus/dashboard", budget_ms=7000)
        finally:
            await blocker.rollback()

    assert dom.get_element_by_id("refresh-status").text_content() == "live"
    assert dom.get_element_by_id("worker-id").text_content() == stats["worker_id"]
    assert _series(dom, "backlog")["backfill"] >= 1
    assert set(_series(dom, "backlog")) == {"backfill", "ingest", "operation"}
    assert _series(dom, "completed")["backfill"] > 0
    assert _series(dom, "lag")[topics.backfill] >= 1
    assert int(dom.xpath('//*[@id="chart-lag"]/*[local-name()="polyline"]/@data-points')[0]) >= 2

    rows = dom.xpath('//table[@id="failed-jobs"]/tbody/tr[@data-job-type="backfill"]')
    assert len(rows) == 1
    row = rows[0]
    assert row.get("data-error-code") == "E_BACKFILL_TUPLE_INVALID"
    assert "default_library_id is not a default library" in row.text_content()
    (href,) = row.xpath(".//a/@href")
    query = parse_qs(urlsplit(href).query)
    assert query["job_type"] == ["backfill"]
    assert query["default_library_id"] == [str(broken.default_library_id)]
    assert query["user_id"] == [str(viewer)]
    workers = dom.xpath('//table[@id="workers"]/tbody/tr/@data-worker-id')
    assert workers == [stats["worker_id"]]

    await _check_timeline(base + href, broken, topics)
    # Let go: the held job and the one queued behind it finish.
    await poll(lambda: _is(sessionmaker, held, "completed"), what="held job done", deadline_s=60)
    await poll(lambda: _is(sessionmaker, queued, "completed"), what="queued done", deadline_s=60)


async def _is(sm: SM, key: backfill.BackfillKey, status: str) -> bool:
    return await _status(sm, key) == status


async def _check_timeline(url: str, key: backfill.BackfillKey, topics: Topics) -> None:
    """The dashboard's link: the failed job's transitions and messages, as a page and as
    JSON; a bad query is the error envelope."""
    async with httpx.AsyncClient(timeout=10) as client:
        page = await client.get(url)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "E_BACKFILL_TUPLE_INVALID" in page.text
        assert "default_library_id is not a default library" in page.text
        body = (await client.get(url + "&format=json")).json()
        assert body["job"]["status"] == "failed"
        assert [
            (e["from_status"], e["to_status"]) for e in body["data"] if e["kind"] == "job_event"
        ] == [
            ("failed", "pending"),
            ("pending", "running"),
            ("running", "failed"),
        ]
        messages = [e for e in body["data"] if e["kind"] == "outbox"]
        assert [m["topic"] for m in messages] == [topics.backfill, topics.events]
        assert messages[0]["payload"]["source_library_id"] == str(key.source_library_id)

        base = url.split("?")[0]
        unknown = {k: str(uuid.uuid4()) for k in key.as_dict()}
        for params, status, code in (
            ({"job_type": "nope"}, 400, "E_INVALID_REQUEST"),
            ({"job_type": "backfill"}, 400, "E_INVALID_REQUEST"),
            ({"job_type": "ingest", "media_id": "not-a-uuid"}, 400, "E_INVALID_REQUEST"),
            ({"job_type": "backfill", **unknown}, 404, "E_NOT_FOUND"),
        ):
            resp = await client.get(base, params=params)
            assert resp.status_code == status, resp.text
            error = resp.json()["error"]
            assert error["code"] == code and error["message"] and error["request_id"]
