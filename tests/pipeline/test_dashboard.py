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
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.config import Settings
from nexus.messaging.topics import Topics
from nexus.sharing import backfill
from tests.support import backfill_jobs as jobs
from tests.support.agent_stats import agents_base
from tests.support.agent_stats import stats as agent_stats
from tests.support.browser import dump_dom
from tests.support.locks import lock_waiters, membership_locked
from tests.support.processes import Child, poll

SM = async_sessionmaker[AsyncSession]


@pytest.fixture
def agents_settings(pipeline_settings: Settings) -> Settings:
    # A job is held on purpose for a while: its lease must outlast the test. Stats are
    # refreshed often so the polls below see changes quickly.
    return pipeline_settings.model_copy(
        update={"lease_seconds": 300.0, "metrics_db_cache_seconds": 0.5}
    )


def _series(dom: Any, chart: str) -> dict[str, float]:
    lines = dom.xpath(f'//*[@id="chart-{chart}"]/*[local-name()="polyline"]')
    return {line.get("data-name"): float(line.get("data-last")) for line in lines}


async def test_dashboard_charts_live_data_and_lists_a_job_that_really_failed(
    agents_settings: Settings, sessionmaker: SM, agents: Child
) -> None:
    topics = Topics.from_settings(agents_settings)
    base = agents_base(agents_settings)
    sc, (held_source, queued_source) = await jobs.more_sources(sessionmaker, n_media=3, more=2)
    viewer, d = sc["viewer"], sc["d"]
    done = backfill.BackfillKey(d, sc["s"], viewer)
    # The "default library" of this tuple is a shared one: the worker refuses it.
    broken = backfill.BackfillKey(sc["s"], held_source, viewer)
    for key in (done, broken):
        await jobs.requeue_failed(sessionmaker, topics, key)
    await jobs.wait_for_status(sessionmaker, done, "completed", deadline_s=60)
    await jobs.wait_for_status(
        sessionmaker, broken, "failed", deadline_s=60, what="invalid tuple failed"
    )
    assert await jobs.status(sessionmaker, done) == "completed"

    held = backfill.BackfillKey(d, held_source, viewer)
    queued = backfill.BackfillKey(d, queued_source, viewer)  # same default library: same partition
    async with membership_locked(sessionmaker, held_source, viewer):
        await jobs.requeue_failed(sessionmaker, topics, held)

        async def blocked() -> bool:
            return await lock_waiters(sessionmaker) >= 1

        await poll(blocked, what="the held job waiting on the membership lock", deadline_s=60)
        await jobs.requeue_failed(sessionmaker, topics, queued)

        async def backlogged() -> dict[str, Any] | None:
            stats = await agent_stats(agents_settings)
            lag = sum(p["lag"] or 0 for p in stats["lag"] if p["topic"] == topics.backfill)
            pending = stats["backlog"]["backfill"]["pending_count"]
            return stats if lag >= 1 and pending >= 1 else None

        stats = await poll(backlogged, what="lag and a pending backlog", deadline_s=60)

        async def charted() -> Any:
            # The page draws what its own refreshes fetched; on a busy machine the first
            # page may not have drawn the backlog yet, a later one must.
            dom = await dump_dom(f"{base}/nexus/dashboard", budget_ms=7000)
            return (dom,) if _series(dom, "backlog").get("backfill", 0) >= 1 else None

        (dom,) = await poll(charted, what="the backlog on the chart", deadline_s=90, interval=0.5)

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
    await jobs.wait_for_status(sessionmaker, held, "completed", deadline_s=60, what="held job")
    await jobs.wait_for_status(sessionmaker, queued, "completed", deadline_s=60, what="queued")


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
