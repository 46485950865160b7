"""Retries through a real Faust worker, with a real transient database failure.

The failure is forced honestly: the test's database has `lock_timeout` set (as a DBA
would), and the test holds the membership row `FOR UPDATE` in an open transaction. The
worker's chunk needs that row `FOR SHARE` (strict revocation), so it waits, its statement
fails with `lock_not_available`, and the attempt is recorded as a transient failure. When
the test lets go of the row, the next attempt succeeds.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.config import Settings
from nexus.db.tx import transaction
from nexus.messaging.topics import Topics
from nexus.sharing import backfill
from tests.support import backfill_jobs as jobs
from tests.support import factories as f
from tests.support.locks import membership_locked
from tests.support.processes import Child, poll

SM = async_sessionmaker[AsyncSession]
DELAYS = (0.5, 1.0)
# The scheduler polls every 0.2 s; a claim follows a due retry within this much.
SLACK_SECONDS = 2.5
LEDGER = "from_status, to_status, attempt, error_code, at"


@pytest.fixture
def agents_settings(pipeline_settings: Settings, short_lock_timeout: None) -> Settings:
    return pipeline_settings.model_copy(
        update={
            "backfill_retry_delays": DELAYS,
            "lease_seconds": 10.0,
            "scheduler_interval_seconds": 0.2,
            "scheduler_redeliver_after_seconds": 5.0,
            "rescue_interval_seconds": 0.5,
        }
    )


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
    agents_settings: Settings, sessionmaker: SM, agents: Child
) -> None:
    sc = await _scenario(sessionmaker)
    async with membership_locked(sessionmaker, sc["s"], sc["viewer"]):
        await _requeue(sessionmaker, agents_settings, sc["key"])

        async def failed_twice() -> bool:
            return len(_failures(await jobs.events(sessionmaker, sc["viewer"], LEDGER))) >= 2

        await poll(failed_twice, deadline_s=30, interval=0.05, what="two failed attempts")
        job = await jobs.job(sessionmaker, sc["viewer"])
        assert (job.status, job.attempts) == ("pending", 2)
        last = _failures(await jobs.events(sessionmaker, sc["viewer"], LEDGER))[-1]
        # Recorded in the failure's transaction: next_attempt_at = failure time + delay[1].
        assert (job.next_attempt_at - last.at).total_seconds() == DELAYS[1]

    await jobs.wait_for_status(
        sessionmaker, sc["viewer"], "completed", deadline_s=30, what="third attempt completes"
    )
    events = await jobs.events(sessionmaker, sc["viewer"], LEDGER)
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
    agents_settings: Settings, sessionmaker: SM, agents: Child
) -> None:
    sc = await _scenario(sessionmaker)
    attempts = len(DELAYS) + 1
    async with membership_locked(sessionmaker, sc["s"], sc["viewer"]):
        await _requeue(sessionmaker, agents_settings, sc["key"])

        await jobs.wait_for_status(
            sessionmaker, sc["viewer"], "failed", deadline_s=30, what="terminal failure"
        )
    job = await jobs.job(sessionmaker, sc["viewer"])
    assert job.attempts == attempts and job.finished_at is not None
    events = await jobs.events(sessionmaker, sc["viewer"], LEDGER)
    assert [e.to_status for e in _failures(events)] == ["pending"] * len(DELAYS) + ["failed"]
    _assert_schedule(events)
    async with sessionmaker() as s:
        assert await f.library_media_ids(s, sc["d"]) == set()

    # Failed jobs are left alone by the scheduler; an operator requeue revives it.
    await _requeue(sessionmaker, agents_settings, sc["key"])

    await jobs.wait_for_status(
        sessionmaker, sc["viewer"], "completed", deadline_s=30, what="requeued job completes"
    )
    job = await jobs.job(sessionmaker, sc["viewer"])
    assert job.attempts == 1 and job.last_error_code is None
    events = await jobs.events(sessionmaker, sc["viewer"], LEDGER)
    assert [(e.from_status, e.to_status, e.attempt) for e in events[-3:]] == [
        ("failed", "pending", 0),
        ("pending", "running", 1),
        ("running", "completed", 1),
    ]
    async with sessionmaker() as s:
        assert await f.library_media_ids(s, sc["d"]) == set(sc["media"])
