"""Backfill attempts on the real database, without a broker: `run_job` + `materialise`.

Retry schedule and terminal failures through the single attempt runner, tuple validation,
chunk boundaries, lease renewal per chunk and fencing of a rescued (zombie) attempt.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.db.tx import transaction
from nexus.errors import TerminalError, TransientError
from nexus.jobs import machine
from nexus.jobs.machine import Claim, LeaseLost
from nexus.jobs.worker import JobPolicy, Outcome, run_job
from nexus.messaging.topics import Topics
from nexus.sharing import backfill
from nexus.sharing.backfill import JOB, BackfillKey
from tests.conftest import make_settings
from tests.support import factories as f

SM = async_sessionmaker[AsyncSession]
DELAYS = (7.0, 11.0, 13.0)
POLICY = JobPolicy(owner="test-worker", lease_seconds=30, delays=DELAYS)


async def _scenario(sm: SM, n_media: int = 3) -> dict[str, Any]:
    async with transaction(sm) as s:
        sc = await f.sharing_scenario(s, n_media=n_media)
        sc["key"] = await f.backfill_job(s, sc["d"], sc["s"], sc["viewer"])
    return sc


async def _job(sm: SM, key: dict[str, uuid.UUID]) -> Any:
    async with sm() as s:
        return (
            await s.execute(
                text("SELECT * FROM default_library_backfill_jobs WHERE user_id = :u"),
                {"u": key["user_id"]},
            )
        ).one()


async def _events(sm: SM, key: dict[str, uuid.UUID]) -> list[Any]:
    async with sm() as s:
        return list(
            await s.execute(
                text(
                    "SELECT from_status, to_status, attempt, error_code, error_message, at "
                    "FROM job_events WHERE job_key->>'user_id' = :u ORDER BY id"
                ),
                {"u": str(key["user_id"])},
            )
        )


async def _make_due(sm: SM, key: dict[str, uuid.UUID]) -> None:
    async with transaction(sm) as s:
        await s.execute(
            text(
                "UPDATE default_library_backfill_jobs SET next_attempt_at = now() "
                "WHERE user_id = :u"
            ),
            {"u": key["user_id"]},
        )


async def _count(sm: SM, sql: str, **params: Any) -> int:
    async with sm() as s:
        return int(await s.scalar(text(sql), params) or 0)


async def _edges(sm: SM, d: uuid.UUID) -> int:
    return await _count(
        sm, "SELECT count(*) FROM default_library_closure_edges WHERE default_library_id = :d", d=d
    )


def _failing(times: int, exc: Exception) -> Any:
    """A work function that raises `exc` on its first `times` calls, then materialises."""
    calls = {"n": 0}

    async def work(sm: SM, claim: Claim) -> None:
        calls["n"] += 1
        if calls["n"] <= times:
            raise exc
        await backfill.materialise(sm, claim, chunk_size=2)

    return work


async def test_transient_failures_follow_the_schedule_then_the_job_completes(
    sessionmaker: SM,
) -> None:
    sc = await _scenario(sessionmaker)
    work = _failing(2, TransientError("E_INTERNAL", "flaky dependency"))
    for n in (1, 2):
        out = await run_job(sessionmaker, JOB, sc["key"], work, POLICY)
        assert out == Outcome.RETRY
        job = await _job(sessionmaker, sc["key"])
        failure = (await _events(sessionmaker, sc["key"]))[-1]
        assert (job.status, job.attempts, job.last_error_code) == ("pending", n, "E_INTERNAL")
        assert (failure.to_status, failure.attempt) == ("pending", n)
        # Same transaction: next_attempt_at is exactly the failure time + delay[n-1].
        assert job.next_attempt_at - failure.at == timedelta(seconds=DELAYS[n - 1])
        # Not due yet: a message now (duplicate, early scheduler) is a no-op.
        assert await run_job(sessionmaker, JOB, sc["key"], work, POLICY) == Outcome.NOOP
        await _make_due(sessionmaker, sc["key"])
    assert await run_job(sessionmaker, JOB, sc["key"], work, POLICY) == Outcome.COMPLETED
    job = await _job(sessionmaker, sc["key"])
    assert (job.status, job.attempts, job.last_error_code) == ("completed", 3, None)
    assert [(e.to_status, e.attempt) for e in await _events(sessionmaker, sc["key"])] == [
        ("running", 1),
        ("pending", 1),
        ("running", 2),
        ("pending", 2),
        ("running", 3),
        ("completed", 3),
    ]
    assert await _edges(sessionmaker, sc["d"]) == 3


async def test_the_last_attempt_is_terminal_and_requeue_resets_it(sessionmaker: SM) -> None:
    sc = await _scenario(sessionmaker)
    work = _failing(len(DELAYS) + 1, TransientError("E_INTERNAL", "still down"))
    outcomes = []
    for _ in range(len(DELAYS) + 1):
        outcomes.append(await run_job(sessionmaker, JOB, sc["key"], work, POLICY))
        await _make_due(sessionmaker, sc["key"])
    assert outcomes == [Outcome.RETRY] * len(DELAYS) + [Outcome.FAILED]
    job = await _job(sessionmaker, sc["key"])
    assert (job.status, job.attempts) == ("failed", len(DELAYS) + 1)
    assert job.finished_at is not None and job.lease_token is None
    events = await _events(sessionmaker, sc["key"])
    assert [e.to_status for e in events].count("failed") == 1
    assert events[-1].attempt == len(DELAYS) + 1
    # A failed job is never claimed again by a message.
    assert await run_job(sessionmaker, JOB, sc["key"], work, POLICY) == Outcome.NOOP

    topics = Topics.from_settings(make_settings(kafka_bootstrap="127.0.0.1:1"))
    async with transaction(sessionmaker) as s:
        result = await backfill.requeue(
            s,
            BackfillKey(sc["d"], sc["s"], sc["viewer"]),
            topics,
            actor="operator:test",
            request_id="req-1",
            correlation_id="corr-1",
        )
    assert not result.idempotent and result.outbox_id is not None
    job = await _job(sessionmaker, sc["key"])
    assert (job.status, job.attempts, job.last_error_code, job.finished_at) == (
        "pending",
        0,
        None,
        None,
    )
    assert await run_job(sessionmaker, JOB, sc["key"], work, POLICY) == Outcome.COMPLETED
    assert (await _job(sessionmaker, sc["key"])).attempts == 1
    assert await _edges(sessionmaker, sc["d"]) == 3


async def test_a_terminal_error_fails_at_once(sessionmaker: SM) -> None:
    sc = await _scenario(sessionmaker)
    work = _failing(1, TerminalError("E_BACKFILL_TUPLE_INVALID", "no"))
    assert await run_job(sessionmaker, JOB, sc["key"], work, POLICY) == Outcome.FAILED
    job = await _job(sessionmaker, sc["key"])
    assert (job.status, job.attempts, job.last_error_code) == (
        "failed",
        1,
        "E_BACKFILL_TUPLE_INVALID",
    )


async def _invalid(sm: SM, kind: str) -> tuple[dict[str, uuid.UUID], str]:
    async with transaction(sm) as s:
        sc = await f.sharing_scenario(s)
        if kind == "default not owned":
            other = await f.user(s)
            other_d = await f.library(s, other, default=True)
            key = await f.backfill_job(s, other_d, sc["s"], sc["viewer"])
            return key, "default library is not owned by the user"
        if kind == "source is default":
            owner_d = await f.library(s, sc["owner"], default=True)
            await f.member(s, owner_d, sc["viewer"])
            key = await f.backfill_job(s, sc["d"], owner_d, sc["viewer"])
            return key, "source library is a default library"
        if kind == "target not default":
            key = await f.backfill_job(s, sc["s"], sc["s"], sc["viewer"])
            return key, "default_library_id is not a default library"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["default not owned", "source is default", "target not default"])
async def test_an_invalid_tuple_fails_at_once_with_the_reason(sessionmaker: SM, kind: str) -> None:
    key, reason = await _invalid(sessionmaker, kind)
    out = await run_job(sessionmaker, JOB, key, backfill.materialise, POLICY)
    assert out == Outcome.FAILED
    job = await _job(sessionmaker, key)
    assert (job.status, job.attempts, job.last_error_code, job.last_error_message) == (
        "failed",
        1,
        "E_BACKFILL_TUPLE_INVALID",
        reason,
    )
    events = await _events(sessionmaker, key)
    assert [(e.to_status, e.error_code) for e in events] == [
        ("running", None),
        ("failed", "E_BACKFILL_TUPLE_INVALID"),
    ]
    assert await _count(sessionmaker, "SELECT count(*) FROM default_library_closure_edges") == 0


@pytest.mark.parametrize(("n_media", "chunk"), [(21, 7), (22, 7), (5, 100), (0, 3)])
async def test_chunks_materialise_every_media_exactly_once(
    sessionmaker: SM, n_media: int, chunk: int
) -> None:
    sc = await _scenario(sessionmaker, n_media=n_media)
    async with transaction(sessionmaker) as s:
        claim = await machine.claim(s, JOB, sc["key"], owner="w", lease_seconds=30)
    assert claim is not None
    await backfill.materialise(sessionmaker, claim, chunk_size=chunk)
    async with sessionmaker() as s:
        assert await f.library_media_ids(s, sc["d"]) == set(sc["media"])
        assert {e[1] for e in await f.edges(s)} == set(sc["media"])
        assert await f.closure_violations(s) == []
    # Idempotent: a second run (a retry after a crash) writes nothing new.
    await backfill.materialise(sessionmaker, claim, chunk_size=chunk)
    assert await _edges(sessionmaker, sc["d"]) == n_media


async def test_every_chunk_renews_the_lease(sessionmaker: SM) -> None:
    sc = await _scenario(sessionmaker, n_media=6)
    async with transaction(sessionmaker) as s:
        claim = await machine.claim(s, JOB, sc["key"], owner="w", lease_seconds=600)
        assert claim is not None and claim.lease_seconds == 600
        # As if the attempt had run for a long time: the lease is about to expire.
        await s.execute(
            text(
                "UPDATE default_library_backfill_jobs "
                "SET lease_expires_at = now() + interval '1 second'"
            )
        )
    await backfill.materialise(sessionmaker, claim, chunk_size=2)
    job = await _job(sessionmaker, sc["key"])
    async with sessionmaker() as s:
        left = await s.scalar(
            text("SELECT extract(epoch FROM :t - now())"), {"t": job.lease_expires_at}
        )
    assert 590 < float(left) <= 600
    # An expired-but-not-yet-rescued lease is renewed too; the rescue then finds nothing.
    async with transaction(sessionmaker) as s:
        assert await machine.renew_lease(s, JOB, claim)
        assert await machine.rescue_expired(s, JOB, delays=DELAYS, actor="rescuer") == []


async def test_a_rescued_attempt_writes_nothing_more(sessionmaker: SM) -> None:
    sc = await _scenario(sessionmaker, n_media=4)
    async with transaction(sessionmaker) as s:
        zombie = await machine.claim(s, JOB, sc["key"], owner="zombie", lease_seconds=30)
        await s.execute(
            text(
                "UPDATE default_library_backfill_jobs "
                "SET lease_expires_at = now() - interval '1 second'"
            )
        )
        rescued = await machine.rescue_expired(s, JOB, delays=(0.0,), actor="rescuer")
    assert zombie is not None and [r["status"] for r in rescued] == ["pending"]
    with pytest.raises(LeaseLost):
        await backfill.materialise(sessionmaker, zombie, chunk_size=2)
    assert await _edges(sessionmaker, sc["d"]) == 0
    async with transaction(sessionmaker) as s:
        assert not await machine.renew_lease(s, JOB, zombie)
    # The next attempt (new token) completes the job.
    assert await run_job(sessionmaker, JOB, sc["key"], backfill.materialise, POLICY) == (
        Outcome.COMPLETED
    )
    assert await _edges(sessionmaker, sc["d"]) == 4


async def test_membership_gone_completes_with_nothing_written(sessionmaker: SM) -> None:
    sc = await _scenario(sessionmaker, n_media=4)
    async with transaction(sessionmaker) as s:
        await s.execute(
            text("DELETE FROM memberships WHERE library_id = :s AND user_id = :u"),
            {"s": sc["s"], "u": sc["viewer"]},
        )
    assert await run_job(sessionmaker, JOB, sc["key"], backfill.materialise, POLICY) == (
        Outcome.COMPLETED
    )
    assert await _edges(sessionmaker, sc["d"]) == 0
