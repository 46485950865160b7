"""Retries through a real Faust worker, with a real transient database failure.

The failure is forced honestly: the test's database has `lock_timeout` set (as a DBA
would), and the test holds the membership row `FOR UPDATE` in an open transaction. The
worker's chunk needs that row `FOR SHARE` (strict revocation), so it waits, its statement
fails with `lock_not_available`, and the attempt is recorded as a transient failure. When
the test lets go of the row, the next attempt succeeds.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.config import Settings
from nexus.db.tx import transaction
from nexus.messaging.topics import Topics
from nexus.sharing import backfill
from tests.support import factories as f
from tests.support.processes import Child, poll, start_agents
from tests.support.services import asyncpg_dsn

SM = async_sessionmaker[AsyncSession]
DELAYS = (0.5, 1.0)
# The scheduler polls every 0.2 s; a claim follows a due retry within this much.
SLACK_SECONDS = 2.5


@pytest_asyncio.fixture
async def retry_settings(pipeline_settings: Settings, db_name: str) -> Settings:
    conn = await asyncpg.connect(asyncpg_dsn(db_name))
    try:
        await conn.execute(f"ALTER DATABASE \"{db_name}\" SET lock_timeout = '300ms'")
    finally:
        await conn.close()
    return pipeline_settings.model_copy(
        update={
            "backfill_retry_delays": DELAYS,
            "lease_seconds": 10.0,
            "scheduler_interval_seconds": 0.2,
            "scheduler_redeliver_after_seconds": 5.0,
            "rescue_interval_seconds": 0.5,
        }
    )


@pytest_asyncio.fixture
async def worker(retry_settings: Settings, logs_dir: Path) -> AsyncIterator[Child]:
    child = await start_agents(retry_settings, logs_dir)
    try:
        yield child
    finally:
        child.stop()


async def _scenario(sm: SM) -> dict[str, Any]:
    async with transaction(sm) as s:
        sc = await f.sharing_scenario(s, n_media=25)
        await f.backfill_job(
            s, sc["d"], sc["s"], sc["viewer"], status="completed", finished_at=datetime.now(UTC)
        )
    sc["key"] = backfill.BackfillKey(sc["d"], sc["s"], sc["viewer"])
    return sc


async def _requeue(sm: SM, settings: Settings, key: backfill.BackfillKey) -> None:
    """The operator requeue service; its outbox row reaches the worker through the relay."""
    async with transaction(sm) as s:
        result = await backfill.requeue(
            s,
            key,
            Topics.from_settings(settings),
            actor="operator:test",
            request_id=None,
            correlation_id=f"requeue-{uuid.uuid4().hex[:6]}",
        )
    assert not result.idempotent


async def _hold_membership(sm: SM, sc: dict[str, Any]) -> AsyncSession:
    gate = sm()
    await gate.begin()
    await gate.execute(
        text("SELECT 1 FROM memberships WHERE library_id = :s AND user_id = :u FOR UPDATE"),
        {"s": sc["s"], "u": sc["viewer"]},
    )
    return gate


async def _events(sm: SM, user: uuid.UUID) -> list[Any]:
    async with sm() as s:
        return list(
            await s.execute(
                text(
                    "SELECT from_status, to_status, attempt, error_code, at FROM job_events "
                    "WHERE job_type = 'backfill' AND job_key->>'user_id' = :u ORDER BY id"
                ),
                {"u": str(user)},
            )
        )


async def _job(sm: SM, user: uuid.UUID) -> Any:
    async with sm() as s:
        return (
            await s.execute(
                text("SELECT * FROM default_library_backfill_jobs WHERE user_id = :u"),
                {"u": user},
            )
        ).one()


def _failures(events: list[Any]) -> list[Any]:
    return [e for e in events if e.from_status == "running" and e.to_status != "completed"]


def _assert_schedule(events: list[Any]) -> None:
    """Each failed attempt n is claimed again no sooner than delay[n-1] after it failed."""
    failures = [e for e in _failures(events) if e.to_status == "pending"]
    claims = [e for e in events if e.to_status == "running"]
    for failure in failures:
        nxt = next(c for c in claims if c.attempt == failure.attempt + 1)
        waited = (nxt.at - failure.at).total_seconds()
        delay = DELAYS[failure.attempt - 1]
        assert delay <= waited < delay + SLACK_SECONDS, (failure.attempt, waited)


async def test_transient_failures_retry_on_schedule_then_complete(
    retry_settings: Settings, sessionmaker: SM, worker: Child
) -> None:
    sc = await _scenario(sessionmaker)
    gate = await _hold_membership(sessionmaker, sc)
    try:
        await _requeue(sessionmaker, retry_settings, sc["key"])

        async def failed_twice() -> bool:
            return len(_failures(await _events(sessionmaker, sc["viewer"]))) >= 2

        await poll(failed_twice, deadline_s=30, interval=0.05, what="two failed attempts")
        job = await _job(sessionmaker, sc["viewer"])
        assert (job.status, job.attempts) == ("pending", 2)
        last = _failures(await _events(sessionmaker, sc["viewer"]))[-1]
        # Recorded in the failure's transaction: next_attempt_at = failure time + delay[1].
        assert (job.next_attempt_at - last.at).total_seconds() == DELAYS[1]
    finally:
        await gate.rollback()
        await gate.close()

    async def completed() -> bool:
        return (await _job(sessionmaker, sc["viewer"])).status == "completed"

    await poll(completed, deadline_s=30, interval=0.1, what="third attempt completes")
    events = await _events(sessionmaker, sc["viewer"])
    assert [(e.to_status, e.attempt) for e in events] == [
        ("pending", 0),
        ("running", 1),
        ("pending", 1),
        ("running", 2),
        ("pending", 2),
        ("running", 3),
        ("completed", 3),
    ]
    codes = {e.error_code for e in _failures(events)}
    assert len(codes) == 1 and None not in codes
    _assert_schedule(events)
    async with sessionmaker() as s:
        assert await f.library_media_ids(s, sc["d"]) == set(sc["media"])


async def test_the_last_attempt_fails_terminally_and_requeue_revives_it(
    retry_settings: Settings, sessionmaker: SM, worker: Child
) -> None:
    sc = await _scenario(sessionmaker)
    attempts = len(DELAYS) + 1
    gate = await _hold_membership(sessionmaker, sc)
    try:
        await _requeue(sessionmaker, retry_settings, sc["key"])

        async def failed() -> bool:
            return (await _job(sessionmaker, sc["viewer"])).status == "failed"

        await poll(failed, deadline_s=30, interval=0.1, what="terminal failure")
    finally:
        await gate.rollback()
        await gate.close()
    job = await _job(sessionmaker, sc["viewer"])
    assert job.attempts == attempts and job.finished_at is not None
    events = await _events(sessionmaker, sc["viewer"])
    assert [e.to_status for e in _failures(events)] == ["pending"] * len(DELAYS) + ["failed"]
    _assert_schedule(events)
    async with sessionmaker() as s:
        assert await f.library_media_ids(s, sc["d"]) == set()

    # Failed jobs are left alone by the scheduler; an operator requeue revives it.
    await _requeue(sessionmaker, retry_settings, sc["key"])

    async def completed() -> bool:
        return (await _job(sessionmaker, sc["viewer"])).status == "completed"

    await poll(completed, deadline_s=30, interval=0.1, what="requeued job completes")
    job = await _job(sessionmaker, sc["viewer"])
    assert job.attempts == 1 and job.last_error_code is None
    events = await _events(sessionmaker, sc["viewer"])
    assert [(e.from_status, e.to_status, e.attempt) for e in events[-3:]] == [
        ("failed", "pending", 0),
        ("pending", "running", 1),
        ("running", "completed", 1),
    ]
    async with sessionmaker() as s:
        assert await f.library_media_ids(s, sc["d"]) == set(sc["media"])
