"""Postgres re-drives work: due retries, lost messages and expired leases all complete."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.config import Settings
from nexus.db.tx import transaction
from tests.support import backfill_jobs as jobs
from tests.support import factories as f
from tests.support.db import count
from tests.support.processes import Child, poll

SM = async_sessionmaker[AsyncSession]
LEDGER = "from_status, to_status, error_code"


@pytest.fixture
def agents_settings(pipeline_settings: Settings) -> Settings:
    return pipeline_settings.model_copy(
        update={
            "scheduler_interval_seconds": 0.3,
            "scheduler_redeliver_after_seconds": 2.0,
            "rescue_interval_seconds": 0.3,
            "prune_interval_seconds": 0.3,
        }
    )


async def _job(sm: SM, sql_values: str) -> uuid.UUID:
    """A backfill job in the given state, with no message anywhere (only Postgres knows)."""
    async with transaction(sm) as s:
        sc = await f.sharing_scenario(s, n_media=3)
        await f.backfill_job(s, sc["d"], sc["s"], sc["viewer"])
        await s.execute(
            text(f"UPDATE default_library_backfill_jobs SET {sql_values} WHERE user_id = :u"),
            {"u": sc["viewer"]},
        )
    return sc["viewer"]


async def test_a_retry_becomes_due_and_is_dispatched(sessionmaker: SM, agents: Child) -> None:
    # As after a failed attempt: pending, attempts 1, due in a moment, last message older.
    user = await _job(
        sessionmaker,
        "attempts = 1, next_attempt_at = now() + interval '1 second', "
        "dispatched_at = now() - interval '1 minute', last_error_code = 'E_INTERNAL'",
    )
    await jobs.wait_for_status(
        sessionmaker, user, "completed", deadline_s=30, what="retry completed"
    )
    assert [e[1] for e in await jobs.events(sessionmaker, user, LEDGER)] == ["running", "completed"]


async def test_a_lost_message_is_redelivered(sessionmaker: SM, agents: Child) -> None:
    # Dispatched long ago, but the broker lost the message.
    user = await _job(sessionmaker, "dispatched_at = now() - interval '10 seconds'")
    await jobs.wait_for_status(sessionmaker, user, "completed", deadline_s=30, what="redelivered")


async def test_an_expired_lease_is_rescued_and_the_job_completes(
    sessionmaker: SM, agents: Child
) -> None:
    # As if a worker claimed it and died: running with a lease that has expired.
    user = await _job(
        sessionmaker,
        "status = 'running', attempts = 1, lease_token = gen_random_uuid(), "
        "lease_owner = 'dead-worker', lease_expires_at = now() - interval '1 second', "
        "dispatched_at = now() - interval '1 minute'",
    )
    await jobs.wait_for_status(sessionmaker, user, "completed", deadline_s=60, what="rescued job")
    events = await jobs.events(sessionmaker, user, LEDGER)
    assert events[0] == ("running", "pending", "E_LEASE_EXPIRED")
    assert [e[1] for e in events[1:]] == ["running", "completed"]


async def test_expired_idempotency_keys_are_pruned(sessionmaker: SM, agents: Child) -> None:
    async with transaction(sessionmaker) as s:
        user = await f.user(s)
        for key, age in (("old", timedelta(hours=25)), ("fresh", timedelta(hours=1))):
            await s.execute(
                text(
                    "INSERT INTO idempotency_keys "
                    "(user_id, route, key, request_hash, status_code, response, created_at) "
                    "VALUES (:u, 'POST /libraries', :k, 'h', 201, '{}', "
                    "now() - CAST(:a AS interval))"
                ),
                {"u": user, "k": key, "a": age},
            )

    async def only_fresh_left() -> bool:
        async with sessionmaker() as s:
            keys = (await s.execute(text("SELECT key FROM idempotency_keys"))).scalars().all()
        return list(keys) == ["fresh"]

    await poll(only_fresh_left, deadline_s=30, what="expired key pruned")


async def test_the_leaders_prune_timer_applies_the_retention_window(
    sessionmaker: SM, agents: Child
) -> None:
    # A finished job and an unfinished one whose whole ledgers are 31 days old, and an old
    # published outbox row beside an old unpublished one (NEXUS_RETENTION_DAYS = 30).
    done = await _job(sessionmaker, "status = 'completed', finished_at = now()")
    waiting = await _job(sessionmaker, "next_attempt_at = now() + interval '1 day'")
    async with transaction(sessionmaker) as s:
        for user in (done, waiting):
            await s.execute(
                text(
                    "INSERT INTO job_events (job_type, job_key, to_status, actor, at) "
                    "SELECT 'backfill', jsonb_build_object('default_library_id', "
                    "default_library_id::text, 'source_library_id', source_library_id::text, "
                    "'user_id', user_id::text), 'pending', 'test', now() - interval '31 days' "
                    "FROM default_library_backfill_jobs WHERE user_id = :u"
                ),
                {"u": user},
            )
        ids = (
            (
                await s.execute(
                    text(
                        "INSERT INTO outbox (topic, payload, created_at, published_at) VALUES "
                        "('t', '{}', now() - interval '31 days', now() - interval '31 days'), "
                        "('t', '{}', now() - interval '31 days', NULL) RETURNING id"
                    )
                )
            )
            .scalars()
            .all()
        )

    async def ledger_of(user: uuid.UUID) -> int:
        return await count(
            sessionmaker,
            "SELECT count(*) FROM job_events WHERE job_key->>'user_id' = :u",
            u=str(user),
        )

    async def pruned() -> bool:
        async with sessionmaker() as s:
            left = set((await s.execute(text("SELECT id FROM outbox"))).scalars())
        return await ledger_of(done) == 0 and ids[0] not in left

    await poll(pruned, deadline_s=30, what="the retention prune")
    assert await ledger_of(waiting) == 1
    async with sessionmaker() as s:
        assert await s.scalar(text("SELECT count(*) FROM outbox WHERE id = :i"), {"i": ids[1]})
