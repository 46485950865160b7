"""`/nexus/stats` of a real Faust worker (broker and Postgres real too) after real work.

Every outcome is produced honestly: a backfill that completes; one that fails (its tuple
is invalid); one that is retried (the database has a `lock_timeout`, as a DBA would set,
and the test holds the membership row the job needs until its first attempt gave up); one
whose lease expired under a dead worker and that the leader rescues; and a message no
agent can decode (dead-lettered).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents import routes
from nexus.config import Settings
from nexus.db.tx import transaction
from nexus.messaging.topics import Topics
from nexus.sharing import backfill
from tests.support import factories as f
from tests.support.kafka import produce
from tests.support.processes import Child, poll, start_agents
from tests.support.services import asyncpg_dsn

SM = async_sessionmaker[AsyncSession]


@pytest_asyncio.fixture
async def stats_settings(pipeline_settings: Settings, db_name: str) -> Settings:
    conn = await asyncpg.connect(asyncpg_dsn(db_name))
    try:
        await conn.execute(f"ALTER DATABASE \"{db_name}\" SET lock_timeout = '300ms'")
    finally:
        await conn.close()
    return pipeline_settings.model_copy(
        update={
            "backfill_retry_delays": (0.5, 1.0),
            "scheduler_interval_seconds": 0.2,
            "rescue_interval_seconds": 0.5,
            "metrics_db_cache_seconds": 0.5,
        }
    )


@pytest_asyncio.fixture
async def worker(stats_settings: Settings, logs_dir: Path) -> AsyncIterator[Child]:
    child = await start_agents(stats_settings, logs_dir)
    try:
        yield child
    finally:
        child.stop()


async def _requeue(sm: SM, topics: Topics, key: backfill.BackfillKey) -> None:
    async with transaction(sm) as s:
        await f.backfill_job(s, *key.as_dict().values(), status="failed", finished_at=now())
    async with transaction(sm) as s:
        await backfill.requeue(s, key, topics, actor="test", request_id=None, correlation_id=None)


def now() -> datetime:
    return datetime.now(UTC)


async def _events(sm: SM, key: backfill.BackfillKey) -> list[tuple[str, str | None]]:
    async with sm() as s:
        rows = await s.execute(
            text(
                "SELECT to_status, error_code FROM job_events WHERE job_type = 'backfill' "
                "AND job_key ->> 'source_library_id' = :s ORDER BY id"
            ),
            {"s": str(key.source_library_id)},
        )
        return [(r[0], r[1]) for r in rows]


async def _stats(settings: Settings) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as client:
        resp = await client.get(f"http://127.0.0.1:{settings.agents_web_port}/nexus/stats")
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def test_stats_report_lag_rates_dead_letters_retries_rescues_backlog_and_workers(
    stats_settings: Settings, sessionmaker: SM, worker: Child
) -> None:
    topics = Topics.from_settings(stats_settings)
    async with transaction(sessionmaker) as s:
        sc = await f.sharing_scenario(s, n_media=2)
        retried_source = await f.library(s, sc["owner"])
        rescued_source = await f.library(s, sc["owner"])
        for lib in (retried_source, rescued_source):
            await f.member(s, lib, sc["viewer"])
    viewer, d = sc["viewer"], sc["d"]
    completed = backfill.BackfillKey(d, sc["s"], viewer)
    invalid = backfill.BackfillKey(sc["s"], retried_source, viewer)
    retried = backfill.BackfillKey(d, retried_source, viewer)
    rescued = backfill.BackfillKey(d, rescued_source, viewer)

    await _requeue(sessionmaker, topics, completed)
    await _requeue(sessionmaker, topics, invalid)
    async with sessionmaker() as blocker:
        await blocker.begin()
        await blocker.execute(
            text("SELECT 1 FROM memberships WHERE library_id = :s AND user_id = :u FOR UPDATE"),
            {"s": retried_source, "u": viewer},
        )
        try:
            await _requeue(sessionmaker, topics, retried)

            async def retried_once() -> bool:
                events = await _events(sessionmaker, retried)
                return any(to == "pending" and code for to, code in events)

            await poll(retried_once, what="a retry of the blocked job", deadline_s=60)
        finally:
            await blocker.rollback()
    # As if a worker claimed it and died: running, with a lease that has expired.
    async with transaction(sessionmaker) as s:
        await f.backfill_job(
            s,
            *rescued.as_dict().values(),
            status="running",
            attempts=1,
            lease_token=uuid.uuid4(),
            lease_owner="dead-worker",
            lease_expires_at=now() - timedelta(seconds=1),
        )
    await produce(stats_settings.kafka_bootstrap, topics.backfill, b"{not json")

    async def settled() -> dict[str, Any] | None:
        stats = await _stats(stats_settings)
        done = stats["jobs"]["backfill"] == {"completed": 3, "failed": 1}
        activity = stats["activity"]["backfill"]
        # The last hour's counts are re-read every 12 cache periods (6 s here).
        counted = (activity["failed_last_hour"], activity["completed_last_minute"]) == (1, 3)
        return stats if done and counted and stats["dead_letters"]["total"] == 1 else None

    stats = await poll(settled, what="every backfill finished", deadline_s=90)

    activity = dict(stats["activity"]["backfill"])
    assert activity.pop("last_hour_age_seconds") >= 0
    assert activity == {
        "retries_last_hour": 1,
        "rescues_last_hour": 1,
        "failed_last_hour": 1,
        "completed_last_minute": 3,
        "completed_per_second": 3 / 60,
    }
    assert stats["activity"]["ingest"]["completed_last_minute"] == 0
    assert (stats["retries_last_hour"], stats["rescues_last_hour"]) == (1, 1)
    assert set(stats["backlog"]) == {"backfill", "ingest", "operation"}
    assert stats["backlog"]["backfill"]["pending_count"] == 0
    assert stats["degraded"] is False and stats["alerting"] is False
    assert stats["dead_letters"] == {
        "total": 1,
        "unreplayed": 1,
        "last_hour": 1,
        "this_worker": 1,
        "this_worker_by_topic": {topics.backfill: 1},
    }

    # completed, invalid, the retried job twice, the rescued one, the undecodable message
    # (a scheduler re-delivery may add a duplicate, which counts too).
    assert set(stats["rates"]) == {route.name for _, route in routes.consumed(topics)}
    assert stats["rates"]["backfill"]["messages_last_minute"] >= 6
    assert stats["rates"]["backfill"]["messages_per_second"] > 0
    assert stats["rates"]["ingest"] == {"messages_last_minute": 0, "messages_per_second": 0}

    assert stats["leader"] is True
    (me,) = stats["workers"]
    assert (me["id"], me["alive"], me["this_worker"], me["status"]) == (
        stats["worker_id"],
        True,
        True,
        "running",
    )

    async def heartbeat_names_partitions() -> bool:
        (w,) = (await _stats(stats_settings))["workers"]
        return any(p.startswith(f"{topics.backfill}:") for p in w["assigned"])

    await poll(heartbeat_names_partitions, what="assignment in the workers row", deadline_s=30)

    backfill_lag = [p for p in stats["lag"] if p["topic"] == topics.backfill]
    assert sorted(p["partition"] for p in backfill_lag) == [0, 1, 2, 3]
    assert max(p["highwater"] or 0 for p in backfill_lag) >= 1

    async def caught_up() -> bool:
        lag = (await _stats(stats_settings))["lag"]
        return all(p["lag"] == 0 for p in lag if p["topic"] == topics.backfill)

    await poll(caught_up, what="the consumer caught up", deadline_s=30)
