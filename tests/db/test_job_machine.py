"""Guarded job transitions on the real database (backfill job table)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.jobs import machine, outbox
from nexus.jobs.machine import LeaseLost
from nexus.messaging.messages import DomainEvent
from nexus.sharing.backfill import JOB
from tests.support import backfill_jobs as jobs

DELAYS = (10.0, 20.0, 30.0)


async def _job(session: AsyncSession, **values: object) -> dict[str, uuid.UUID]:
    return await jobs.seed(session, **values)


async def _events(session: AsyncSession) -> list[tuple[str | None, str, int]]:
    rows = await session.execute(
        text("SELECT from_status, to_status, attempt FROM job_events ORDER BY id")
    )
    return [tuple(r) for r in rows]  # type: ignore[misc]


async def _row(session: AsyncSession, key: dict[str, uuid.UUID]):  # type: ignore[no-untyped-def]
    return (
        await session.execute(
            text(
                "SELECT *, extract(epoch FROM next_attempt_at - now()) AS wait "
                "FROM default_library_backfill_jobs WHERE user_id = :u"
            ),
            {"u": key["user_id"]},
        )
    ).one()


async def test_claim_only_from_pending_and_due(session: AsyncSession) -> None:
    key = await _job(session)
    first = await machine.claim(session, JOB, key, owner="w1", lease_seconds=30)
    assert first is not None and first.attempt == 1
    # A duplicate message finds the job running: no-op.
    assert await machine.claim(session, JOB, key, owner="w2", lease_seconds=30) is None
    row = await _row(session, key)
    assert (row.status, row.lease_owner, row.attempts) == ("running", "w1", 1)
    assert await _events(session) == [("pending", "running", 1)]


async def test_claim_skips_jobs_not_yet_due(session: AsyncSession) -> None:
    key = await _job(session)
    await session.execute(
        text("UPDATE default_library_backfill_jobs SET next_attempt_at = now() + interval '1 hour'")
    )
    assert await machine.claim(session, JOB, key, owner="w1", lease_seconds=30) is None


@pytest.mark.parametrize("status", ["completed", "failed"])
async def test_claim_ignores_finished_jobs(session: AsyncSession, status: str) -> None:
    key = await _job(session)
    await session.execute(
        text("UPDATE default_library_backfill_jobs SET status = :s, finished_at = now()"),
        {"s": status},
    )
    assert await machine.claim(session, JOB, key, owner="w1", lease_seconds=30) is None


async def test_complete_is_fenced_by_the_lease_token(session: AsyncSession) -> None:
    key = await _job(session)
    claim = await machine.claim(session, JOB, key, owner="w1", lease_seconds=30)
    assert claim is not None
    stale = machine.Claim(claim.key, uuid.uuid4(), claim.attempt, None, None)
    with pytest.raises(LeaseLost):
        await machine.complete(session, JOB, stale, actor="zombie")
    await machine.complete(session, JOB, claim, actor="w1")
    row = await _row(session, key)
    assert row.status == "completed" and row.finished_at is not None and row.lease_token is None
    with pytest.raises(LeaseLost):
        await machine.complete(session, JOB, claim, actor="w1")
    assert (await _events(session))[-1] == ("running", "completed", 1)


async def _claim_and_fail(
    session: AsyncSession,
    key: dict[str, uuid.UUID],
    *,
    code: str = "E_INTERNAL",
    message: str = "boom",
    terminal: bool = False,
) -> tuple[int, str]:
    """Claim the job and fail that attempt: (attempt, the job's new status)."""
    claim = await machine.claim(session, JOB, key, owner="w", lease_seconds=30)
    assert claim is not None
    status = await machine.fail(
        session,
        JOB,
        claim,
        code=code,
        message=message,
        delays=DELAYS,
        terminal=terminal,
        actor="w",
    )
    return claim.attempt, status


async def _due_claim_fails(session: AsyncSession, key: dict[str, uuid.UUID]) -> tuple[int, str]:
    """Make the job due, claim it and fail the attempt transiently."""
    await session.execute(text("UPDATE default_library_backfill_jobs SET next_attempt_at = now()"))
    return await _claim_and_fail(session, key)


async def test_failures_follow_the_delay_schedule_then_fail(session: AsyncSession) -> None:
    key = await _job(session)
    for attempt, delay in enumerate(DELAYS, start=1):
        assert await _due_claim_fails(session, key) == (attempt, "pending")
        row = await _row(session, key)
        assert row.last_error_code == "E_INTERNAL"
        assert delay - 1 < float(row.wait) <= delay
    assert await _due_claim_fails(session, key) == (len(DELAYS) + 1, "failed")
    row = await _row(session, key)
    assert row.finished_at is not None
    assert [e[1] for e in await _events(session)].count("failed") == 1


async def test_terminal_failure_does_not_retry(session: AsyncSession) -> None:
    key = await _job(session)
    _, status = await _claim_and_fail(
        session, key, code="E_BACKFILL_TUPLE_INVALID", message="bad", terminal=True
    )
    assert status == "failed"


async def test_rescue_returns_expired_leases_and_fences_the_zombie(session: AsyncSession) -> None:
    key = await _job(session)
    claim = await machine.claim(session, JOB, key, owner="w1", lease_seconds=30)
    assert claim is not None
    assert await machine.rescue_expired(session, JOB, delays=DELAYS, actor="rescuer") == []
    await session.execute(
        text("UPDATE default_library_backfill_jobs SET lease_expires_at = now() - interval '1 s'")
    )
    rescued = await machine.rescue_expired(session, JOB, delays=DELAYS, actor="rescuer")
    assert [r["status"] for r in rescued] == ["pending"]
    row = await _row(session, key)
    assert row.last_error_code == "E_LEASE_EXPIRED" and row.lease_token is None
    assert not await machine.still_holds(session, JOB, claim)
    with pytest.raises(LeaseLost):
        await machine.complete(session, JOB, claim, actor="w1")


async def test_reset_to_pending_leaves_running_jobs_alone(session: AsyncSession) -> None:
    key = await _job(session)
    claim = await machine.claim(session, JOB, key, owner="w1", lease_seconds=30)
    assert claim is not None
    assert (
        await machine.reset_to_pending(
            session, JOB, key, actor="op", request_id="r", correlation_id="c"
        )
        is None
    )
    await machine.complete(session, JOB, claim, actor="w1")
    again = await machine.reset_to_pending(
        session, JOB, key, actor="op", request_id="r2", correlation_id="c2"
    )
    assert again is not None and again.from_status == "completed"
    row = await _row(session, key)
    assert (row.status, row.attempts, row.finished_at, row.request_id) == ("pending", 0, None, "r2")
    assert (await _events(session))[-1] == ("completed", "pending", 0)


def _outbox_rider(name: str) -> machine.Rider:
    """A rider that writes one outbox row (keyed by `name`) and returns it."""
    msg = DomainEvent(event="test.rider", entity_id=name, data={})
    cte = outbox.insert_cte("noted", when="EXISTS (SELECT 1 FROM moved)")
    params = outbox.insert_params("noted", "rider-topic", name, msg)
    return machine.Rider(ctes=cte, result="noted", params=params)


async def _noted(session: AsyncSession) -> list[str]:
    rows = await session.execute(
        text("SELECT key FROM outbox WHERE topic = 'rider-topic' ORDER BY id")
    )
    return [r[0] for r in rows]


async def test_riders_write_only_when_their_transition_matches(session: AsyncSession) -> None:
    key = await _job(session)
    claimed = await machine.claim_with(
        session, JOB, key, owner="w1", lease_seconds=30, rider=_outbox_rider("claim")
    )
    assert claimed is not None
    claim, result = claimed
    assert result is not None and result["id"] > 0  # the rider's RETURNING row comes back
    # A duplicate claim misses: its rider writes nothing and no claim is returned.
    dup = await machine.claim_with(
        session, JOB, key, owner="w2", lease_seconds=30, rider=_outbox_rider("dup-claim")
    )
    assert dup is None
    # A completion with a stale lease misses: LeaseLost, and its rider wrote nothing.
    stale = machine.Claim(claim.key, uuid.uuid4(), claim.attempt, None, None)
    with pytest.raises(LeaseLost):
        await machine.complete(session, JOB, stale, actor="zombie", rider=_outbox_rider("zombie"))
    done = await machine.complete(session, JOB, claim, actor="w1", rider=_outbox_rider("done"))
    assert done is not None and done["id"] > result["id"]
    assert await _noted(session) == ["claim", "done"]
    assert await _events(session) == [("pending", "running", 1), ("running", "completed", 1)]


def test_rider_parameters_cannot_shadow_the_machines() -> None:
    with pytest.raises(ValueError, match="r_"):
        machine.Rider(ctes="x AS (SELECT 1)", result="x", params={"token": 1})


async def test_a_rider_guard_that_fails_misses_the_transition(session: AsyncSession) -> None:
    key = await _job(session)
    claim = await machine.claim(session, JOB, key, owner="w1", lease_seconds=30)
    assert claim is not None
    guarded = machine.Rider(
        ctes="noted AS (SELECT 1 AS one)", result="noted", guard="CAST(:r_ok AS boolean)"
    )
    refused = machine.Rider(
        ctes=guarded.ctes, result="noted", params={"r_ok": False}, guard=guarded.guard
    )
    with pytest.raises(LeaseLost):
        await machine.complete(session, JOB, claim, actor="w1", rider=refused)
    assert (await _row(session, key)).status == "running"  # not finished without the rider
    allowed = machine.Rider(
        ctes=guarded.ctes, result="noted", params={"r_ok": True}, guard=guarded.guard
    )
    assert await machine.complete(session, JOB, claim, actor="w1", rider=allowed) == {"one": 1}
    assert (await _row(session, key)).status == "completed"


async def test_claim_reports_how_long_the_job_waited(session: AsyncSession) -> None:
    key = await _job(session)
    await session.execute(
        text("UPDATE default_library_backfill_jobs SET next_attempt_at = now() - interval '90 s'")
    )
    claim = await machine.claim(session, JOB, key, owner="w1", lease_seconds=30)
    assert claim is not None and claim.queued_seconds is not None
    assert 90 <= claim.queued_seconds < 120
