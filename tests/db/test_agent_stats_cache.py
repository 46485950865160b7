"""The agents' stats snapshot (agents/stats.py): every job type, cached, one refresh at a
time, on the real database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.context import AgentContext
from agents.stats import HOUR_COUNTS_PERIODS, StatsCache
from nexus.config import Settings
from nexus.db.tx import transaction
from nexus.workers.service import Beat, beat
from tests.support import backfill_jobs as jobs


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _ctx(settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> AgentContext:
    ctx = AgentContext.create(settings)
    ctx.sessionmaker = sessionmaker
    return ctx


async def _failed_job(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    await jobs.seed(
        sessionmaker,
        n_media=1,
        status="failed",
        last_error_code="E_BACKFILL_TUPLE_INVALID",
        finished_at=datetime.now(UTC),
    )


async def test_snapshot_covers_every_job_type_and_the_live_workers(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ctx = _ctx(settings, sessionmaker)
    await _failed_job(sessionmaker)
    async with transaction(sessionmaker) as s:
        await beat(s, Beat(ctx.worker_id, "running", ["t.backfill:0"], "test"))
        await beat(s, Beat("gone-worker", "stopped", [], "test"))
        # One letter waiting for a replay; one replayed long ago.
        await s.execute(
            text(
                'INSERT INTO dead_letters (original_topic, partition, "offset", value, '
                "error_code, error_message, at, replayed_at) VALUES "
                "('t.backfill', 0, 1, 'x', 'E_MESSAGE_INVALID', 'not json', now(), NULL), "
                "('t.backfill', 0, 2, 'y', 'E_MESSAGE_INVALID', 'not json', "
                "now() - interval '2 hours', now() - interval '1 hour')"
            )
        )

    snap = await StatsCache(ctx, max_age_seconds=60).get()

    assert snap.jobs == {"backfill": {"failed": 1}, "ingest": {}, "operation": {}}
    assert set(snap.backlog) == set(snap.activity) == {"backfill", "ingest", "operation"}
    assert snap.backlog["backfill"] == {
        "pending_count": 0,
        "pending_age_p95_seconds": None,
        "oldest_pending_age_seconds": None,
    }
    assert snap.activity["ingest"] == {
        "retries_last_hour": 0,
        "rescues_last_hour": 0,
        "failed_last_hour": 0,
        "last_hour_age_seconds": snap.activity["ingest"]["last_hour_age_seconds"],
        "completed_last_minute": 0,
        "completed_per_second": 0.0,
    }
    assert [(w["id"], w["this_worker"], w["assigned"]) for w in snap.workers] == [
        (ctx.worker_id, True, ["t.backfill:0"])
    ]
    assert [(j["job_type"], j["last_error_code"]) for j in snap.failed_jobs] == [
        ("backfill", "E_BACKFILL_TUPLE_INVALID")
    ]
    assert snap.dead_letters == {"total": 2, "unreplayed": 1, "last_hour": 1}


async def test_the_database_is_read_once_per_cache_period_whoever_asks(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    clock = Clock()
    cache = StatsCache(_ctx(settings, sessionmaker), max_age_seconds=5, clock=clock)
    together = await asyncio.gather(*(cache.get() for _ in range(5)))
    assert all(snap is together[0] for snap in together)  # one refresh for all five
    await _failed_job(sessionmaker)
    clock.now += 4.9
    cached = await cache.get()
    assert cached is together[0] and cached.jobs["backfill"] == {}
    clock.now += 0.1  # the period is over: the next request reads again
    fresh = await cache.get()
    assert fresh is not cached and fresh.jobs["backfill"] == {"failed": 1}


async def test_the_last_hour_is_recounted_less_often_than_the_last_minute(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    clock = Clock()
    cache = StatsCache(_ctx(settings, sessionmaker), max_age_seconds=5, clock=clock)
    assert (await cache.get()).activity["backfill"]["failed_last_hour"] == 0
    async with transaction(sessionmaker) as s:
        await s.execute(
            text(
                "INSERT INTO job_events (job_type, job_key, from_status, to_status, attempt, "
                "actor, error_code) VALUES ('backfill', '{}', 'running', 'failed', 1, 'w', 'E'), "
                "('backfill', '{}', 'running', 'completed', 1, 'w', NULL)"
            )
        )
    clock.now += 5  # the next cache period: the minute is re-counted, the hour is not
    snap = await cache.get()
    assert snap.activity["backfill"]["completed_last_minute"] == 1
    assert snap.activity["backfill"]["failed_last_hour"] == 0
    assert snap.activity["backfill"]["last_hour_age_seconds"] == 5
    clock.now += 5 * (HOUR_COUNTS_PERIODS - 1)  # the hour's counts are that many periods old
    snap = await cache.get()
    assert snap.activity["backfill"]["failed_last_hour"] == 1
    assert snap.activity["backfill"]["last_hour_age_seconds"] == 0
