"""Operator cancel and the rescue's lost owners, on the real database (SPEC §10, §7).

- cancel: pending|running → cancelled (finished, `E_CANCELLED`, ledger row); the running
  attempt is fenced out; a finished job is refused; requeue and media retry bring it back;
- rescue: the ledger names the owner whose lease was lost, and a lease whose owner is a
  known worker that stopped or missed its beats is taken back before it expires.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.config import Settings
from nexus.errors import Conflict, NotFound
from nexus.ingest import cancel as ingest_cancel
from nexus.ingest import jobs as ingest_jobs
from nexus.ingest import retry
from nexus.jobs import machine
from nexus.jobs.cancel import cancel_job
from nexus.jobs.machine import LeaseLost
from nexus.messaging.topics import Topics
from nexus.sharing import backfill
from nexus.sharing.backfill import JOB
from nexus.uploads.storage import LocalStorage
from tests.support import backfill_jobs as jobs
from tests.support import factories as f

DELAYS = (10.0, 20.0)


async def _job(session: AsyncSession) -> dict[str, uuid.UUID]:
    return await jobs.seed(session)


async def _row(session: AsyncSession, key: dict[str, uuid.UUID]) -> Any:
    return (
        await session.execute(
            text("SELECT * FROM default_library_backfill_jobs WHERE user_id = :u"),
            {"u": key["user_id"]},
        )
    ).one()


async def _ledger(session: AsyncSession, user: uuid.UUID) -> list[tuple[Any, ...]]:
    rows = await session.execute(
        text(
            "SELECT from_status, to_status, error_code, error_message, actor FROM job_events "
            "WHERE job_key->>'user_id' = :u ORDER BY id"
        ),
        {"u": str(user)},
    )
    return [tuple(r) for r in rows]


async def _cancel(session: AsyncSession, key: dict[str, uuid.UUID], reason: str | None = None):  # type: ignore[no-untyped-def]
    return await cancel_job(
        session,
        JOB,
        key,
        actor="operator:ops",
        requested_by="ops",
        reason=reason,
        request_id="req-1",
        correlation_id="cor-1",
        not_found="no job",
    )


async def test_cancel_of_a_running_job_fences_its_worker_out(session: AsyncSession) -> None:
    key = await _job(session)
    claim = await machine.claim(session, JOB, key, owner="w1", lease_seconds=30)
    assert claim is not None
    done = await _cancel(session, key, reason="wrong tuple")
    assert (done.from_status, done.lease_owner) == ("running", "w1")
    row = await _row(session, key)
    assert row.status == "cancelled" and row.finished_at is not None
    assert row.lease_token is None and row.lease_expires_at is None
    assert row.last_error_code == "E_CANCELLED"
    assert row.last_error_message == "cancelled by ops: wrong tuple"
    # The attempt's next fenced write is refused: renewal, completion and failure alike.
    assert not await machine.renew_lease(session, JOB, claim)
    with pytest.raises(LeaseLost):
        await machine.complete(session, JOB, claim, actor="w1")
    with pytest.raises(LeaseLost):
        await machine.fail(
            session,
            JOB,
            claim,
            code="E_INTERNAL",
            message="x",
            delays=DELAYS,
            terminal=False,
            actor="w1",
        )
    assert (await _row(session, key)).status == "cancelled"
    assert (await _ledger(session, key["user_id"]))[-1] == (
        "running",
        "cancelled",
        "E_CANCELLED",
        "cancelled by ops: wrong tuple",
        "operator:ops",
    )
    # Nothing claims a cancelled job (a message still in flight is a no-op).
    assert await machine.claim(session, JOB, key, owner="w2", lease_seconds=30) is None


async def test_cancel_of_a_pending_job_then_requeue_revives_it(
    session: AsyncSession, settings: Settings
) -> None:
    key = await _job(session)
    done = await _cancel(session, key)
    assert (done.from_status, done.lease_owner) == ("pending", None)
    assert (await _row(session, key)).last_error_message == "cancelled by ops"
    result = await backfill.requeue(
        session,
        backfill.BackfillKey(**key),
        Topics.from_settings(settings),
        actor="operator:ops",
        request_id="r2",
        correlation_id="c2",
    )
    assert not result.idempotent and result.job.status == "pending"
    row = await _row(session, key)
    assert (row.attempts, row.finished_at, row.last_error_code) == (0, None, None)
    assert [e[:2] for e in await _ledger(session, key["user_id"])][-2:] == [
        ("pending", "cancelled"),
        ("cancelled", "pending"),
    ]
    claim = await machine.claim(session, JOB, key, owner="w1", lease_seconds=30)
    assert claim is not None


@pytest.mark.parametrize("finished", ["completed", "failed", "cancelled"])
async def test_a_finished_job_is_not_cancellable(session: AsyncSession, finished: str) -> None:
    key = await _job(session)
    await session.execute(
        text("UPDATE default_library_backfill_jobs SET status = :s, finished_at = now()"),
        {"s": finished},
    )
    before = await _ledger(session, key["user_id"])
    with pytest.raises(Conflict) as caught:
        await _cancel(session, key)
    assert caught.value.code == "E_JOB_NOT_CANCELLABLE"
    assert caught.value.details == {"status": finished}
    assert (await _row(session, key)).status == finished
    assert await _ledger(session, key["user_id"]) == before


async def test_a_missing_job_is_not_found(session: AsyncSession) -> None:
    key = {"default_library_id": uuid.uuid4(), "source_library_id": uuid.uuid4()}
    with pytest.raises(NotFound):
        await _cancel(session, {**key, "user_id": uuid.uuid4()})


async def _ingest_job(session: AsyncSession, topics: Topics) -> uuid.UUID:
    (media_id,) = await f.media(session)
    await ingest_jobs.enqueue(
        session, media_id, topics, actor="t", request_id=None, correlation_id=None
    )
    return media_id


async def _processing(session: AsyncSession, media_id: uuid.UUID, status: str) -> None:
    await session.execute(
        text("UPDATE media SET processing_status = :p WHERE id = :m"), {"p": status, "m": media_id}
    )


async def _cancel_ingest(
    session: AsyncSession, media_id: uuid.UUID, topics: Topics, reason: str | None = None
) -> ingest_cancel.IngestCancelResult:
    return await ingest_cancel.cancel_ingest(
        session,
        media_id,
        topics,
        requested_by="ops",
        reason=reason,
        request_id="r",
        correlation_id="c",
    )


async def test_ingest_cancel_fails_the_media_and_retry_brings_it_back(
    session: AsyncSession, settings: Settings, tmp_path: Path
) -> None:
    topics = Topics.from_settings(settings)
    media_id = await _ingest_job(session, topics)
    claimed = await machine.claim(
        session, ingest_jobs.JOB, {"media_id": media_id}, owner="w1", lease_seconds=30
    )
    assert claimed is not None
    await _processing(session, media_id, "extracting")
    result = await _cancel_ingest(session, media_id, topics)
    assert (result.job_status, result.from_status, result.lease_owner) == (
        "cancelled",
        "running",
        "w1",
    )
    assert (result.processing_status, result.failure_stage) == ("failed", "extract")
    media = (
        await session.execute(
            text(
                "SELECT processing_status, failure_stage, last_error_code FROM media WHERE id = :m"
            ),
            {"m": media_id},
        )
    ).one()
    assert tuple(media) == ("failed", "extract", "E_CANCELLED")
    event = await session.scalar(
        text("SELECT payload FROM outbox WHERE topic = :t ORDER BY id DESC LIMIT 1"),
        {"t": topics.events},
    )
    assert event["event"] == "media.failed" and event["data"]["error_code"] == "E_CANCELLED"
    # Cancelled twice: refused, nothing changes.
    with pytest.raises(Conflict):
        await _cancel_ingest(session, media_id, topics)
    retried = await retry.retry_media(
        session,
        media_id,
        topics,
        LocalStorage(tmp_path),
        viewer=None,
        actor="operator:ops",
        request_id="r3",
        correlation_id="c3",
    )
    assert (retried.processing_status, retried.job_status) == ("pending", "pending")
    job_status = await session.scalar(
        text("SELECT status FROM ingest_jobs WHERE media_id = :m"), {"m": media_id}
    )
    assert job_status == "pending"


async def test_an_embedding_media_fails_at_the_embed_stage(
    session: AsyncSession, settings: Settings
) -> None:
    topics = Topics.from_settings(settings)
    media_id = await _ingest_job(session, topics)
    await _processing(session, media_id, "embedding")
    result = await _cancel_ingest(session, media_id, topics, reason="stop")
    assert (result.processing_status, result.failure_stage) == ("failed", "embed")


# ------------------------------------------------------------------------ rescue


async def _worker(session: AsyncSession, worker_id: str, *, status: str, age_s: float) -> None:
    await session.execute(
        text(
            "INSERT INTO workers (id, host, pid, status, assigned, version, last_heartbeat_at) "
            "VALUES (:id, 'h', 1, :status, '[]', 'v', now() - make_interval(secs => :age))"
        ),
        {"id": worker_id, "status": status, "age": age_s},
    )


async def test_rescue_of_an_expired_lease_names_its_owner(session: AsyncSession) -> None:
    key = await _job(session)
    assert await machine.claim(session, JOB, key, owner="w-gone", lease_seconds=30)
    await session.execute(
        text("UPDATE default_library_backfill_jobs SET lease_expires_at = now() - interval '1 s'")
    )
    rescued = await machine.rescue_expired(session, JOB, delays=DELAYS, actor="leader")
    assert [(r["status"], r["lost_owner"]) for r in rescued] == [("pending", "w-gone")]
    last = (await _ledger(session, key["user_id"]))[-1]
    assert last == (
        "running",
        "pending",
        "E_LEASE_EXPIRED",
        "lease of w-gone expired before completion",
        "leader",
    )
    assert (await _row(session, key)).last_error_message == last[3]


@pytest.mark.parametrize(
    ("status", "age_s", "rescued"),
    [
        ("running", 10.0, True),  # missed 3 beats of 1 s
        ("stopped", 0.0, True),  # stopped without giving its lease back
        ("running", 0.0, False),  # alive
        ("draining", 1.0, False),  # draining and still beating: it releases its own leases
    ],
)
async def test_rescue_takes_back_the_lease_of_a_dead_worker_before_it_expires(
    session: AsyncSession, status: str, age_s: float, rescued: bool
) -> None:
    key = await _job(session)
    await _worker(session, "w-hb", status=status, age_s=age_s)
    claim = await machine.claim(session, JOB, key, owner="w-hb", lease_seconds=120)
    assert claim is not None
    # Without heartbeats only expiry counts: the lease has two minutes left.
    assert await machine.rescue_expired(session, JOB, delays=DELAYS, actor="leader") == []
    got = await machine.rescue_expired(
        session, JOB, delays=DELAYS, actor="leader", dead_after_seconds=3.0
    )
    if not rescued:
        assert got == [] and (await _row(session, key)).status == "running"
        return
    assert [(r["status"], r["lost_owner"]) for r in got] == [("pending", "w-hb")]
    message = (await _ledger(session, key["user_id"]))[-1][3]
    assert message == "worker w-hb stopped or missed its heartbeats; lease taken back"
    with pytest.raises(LeaseLost):
        await machine.complete(session, JOB, claim, actor="w-hb")


async def test_an_owner_unknown_to_the_workers_table_waits_for_expiry(
    session: AsyncSession,
) -> None:
    key = await _job(session)
    assert await machine.claim(session, JOB, key, owner="not-registered", lease_seconds=120)
    got = await machine.rescue_expired(
        session, JOB, delays=DELAYS, actor="leader", dead_after_seconds=3.0
    )
    assert got == [] and (await _row(session, key)).status == "running"
