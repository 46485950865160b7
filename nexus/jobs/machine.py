"""Guarded job transitions with fenced leases, shared by every job type.

Each transition is one `UPDATE ... WHERE <key> AND status = ANY(<expected>) [AND
lease_token = <mine>] RETURNING` plus its `job_events` row, in the caller's transaction.
A miss is never ignored silently: callers get `None`/`False` for the no-op cases the
protocol allows (duplicate or stale messages) and `LeaseLost` when a fenced write finds
that its lease was taken away.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    String,
    Table,
    and_,
    func,
    insert,
    literal,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from nexus.jobs import ledger
from nexus.jobs.models import JobEvent
from nexus.jobs.states import JobStatus


class LeaseLost(Exception):
    """A fenced write found another lease (or none): this attempt must stop writing."""


@dataclass(frozen=True)
class JobType:
    name: str
    table: Table
    key_columns: tuple[str, ...]

    def where_key(self, key: Mapping[str, Any]) -> ColumnElement[bool]:
        return and_(*(self.table.c[name] == key[name] for name in self.key_columns))

    def key_of(self, row: Any) -> dict[str, Any]:
        return {name: getattr(row, name) for name in self.key_columns}


@dataclass(frozen=True)
class Claim:
    key: dict[str, Any]
    lease_token: uuid.UUID
    attempt: int
    request_id: str | None
    correlation_id: str | None
    # The lease length this attempt was granted; `renew_lease` extends by the same amount.
    lease_seconds: float | None = None


def _interval(seconds_param: str) -> Any:
    return text(f"make_interval(secs => :{seconds_param})")


def _with_event(
    job: JobType,
    moved: Any,
    key: Mapping[str, Any],
    *,
    from_status: str,
    to_status: str,
    actor: str,
) -> Any:
    """`WITH moved AS (UPDATE ... RETURNING) INSERT INTO job_events SELECT ... FROM moved`.

    The transition and its ledger row in ONE statement (one round trip on the hot path);
    when the guarded UPDATE matches nothing, nothing is inserted and no row is returned.
    """
    cte = moved.cte("moved")
    columns = {
        "job_type": literal(job.name),
        "job_key": literal(ledger.json_key(key), JSONB),
        "from_status": literal(from_status),
        "to_status": literal(to_status),
        "attempt": cte.c.attempts,
        "actor": literal(actor[:255]),
        "request_id": cte.c.request_id,
        "correlation_id": cte.c.correlation_id,
    }
    return (
        insert(JobEvent)
        .from_select(list(columns), select(*columns.values()).select_from(cte))
        .add_cte(cte)
        .returning(JobEvent.attempt, JobEvent.request_id, JobEvent.correlation_id)
    )


async def claim(
    session: AsyncSession,
    job: JobType,
    key: Mapping[str, Any],
    *,
    owner: str,
    lease_seconds: float,
) -> Claim | None:
    """pending → running with a fresh lease, only if due. None: duplicate/stale/not due."""
    t = job.table
    token = uuid.uuid4()
    moved = (
        update(t)
        .where(
            job.where_key(key),
            t.c.status == JobStatus.PENDING.value,
            t.c.next_attempt_at <= func.now(),
        )
        .values(
            status=JobStatus.RUNNING.value,
            attempts=t.c.attempts + 1,
            lease_token=token,
            lease_owner=owner[:255],
            lease_expires_at=func.now() + _interval("lease").bindparams(lease=lease_seconds),
            updated_at=func.now(),
        )
        .returning(t.c.attempts, t.c.request_id, t.c.correlation_id)
    )
    statement = _with_event(
        job,
        moved,
        key,
        from_status=JobStatus.PENDING.value,
        to_status=JobStatus.RUNNING.value,
        actor=owner,
    )
    row = (await session.execute(statement)).one_or_none()
    if row is None:
        return None
    return Claim(dict(key), token, row.attempt, row.request_id, row.correlation_id, lease_seconds)


async def still_holds(session: AsyncSession, job: JobType, claim_: Claim) -> bool:
    """True while this attempt's lease is current (use before fenced side effects)."""
    t = job.table
    found = await session.scalar(
        select(literal_column("1"))
        .select_from(t)
        .where(
            job.where_key(claim_.key),
            t.c.status == JobStatus.RUNNING.value,
            t.c.lease_token == claim_.lease_token,
        )
        .with_for_update()
    )
    return found is not None


async def renew_lease(
    session: AsyncSession, job: JobType, claim_: Claim, *, lease_seconds: float | None = None
) -> bool:
    """Extend this attempt's lease (fenced by the token); False when it was taken away.

    Long work calls this once per step (e.g. per backfill chunk), in the step's
    transaction, so a live attempt is never rescued however long the whole job takes; the
    row lock it takes also holds off a concurrent rescue until the step commits. The
    lease never shrinks: it becomes max(current expiry, now + lease_seconds).
    """
    t = job.table
    seconds = lease_seconds if lease_seconds is not None else claim_.lease_seconds
    values: dict[str, Any] = {}
    if seconds is not None:
        values["lease_expires_at"] = func.greatest(
            t.c.lease_expires_at, func.now() + _interval("renew").bindparams(renew=seconds)
        )
    else:
        values["lease_expires_at"] = t.c.lease_expires_at
    found = await session.scalar(
        update(t)
        .where(
            job.where_key(claim_.key),
            t.c.status == JobStatus.RUNNING.value,
            t.c.lease_token == claim_.lease_token,
        )
        .values(**values)
        .returning(literal_column("1"))
    )
    return found is not None


async def complete(session: AsyncSession, job: JobType, claim_: Claim, *, actor: str) -> None:
    """running → completed, fenced by the lease token. Raises `LeaseLost` on a miss."""
    t = job.table
    moved = (
        update(t)
        .where(
            job.where_key(claim_.key),
            t.c.status == JobStatus.RUNNING.value,
            t.c.lease_token == claim_.lease_token,
        )
        .values(
            status=JobStatus.COMPLETED.value,
            lease_token=None,
            lease_expires_at=None,
            last_error_code=None,
            last_error_message=None,
            finished_at=func.now(),
            updated_at=func.now(),
        )
        # The claim's ids, as the ledger always records them for this attempt.
        .returning(
            t.c.attempts,
            literal(claim_.request_id, String).label("request_id"),
            literal(claim_.correlation_id, String).label("correlation_id"),
        )
    )
    statement = _with_event(
        job,
        moved,
        claim_.key,
        from_status=JobStatus.RUNNING.value,
        to_status=JobStatus.COMPLETED.value,
        actor=actor,
    )
    if (await session.execute(statement)).one_or_none() is None:
        raise LeaseLost(f"{job.name} {claim_.key}: lease lost before completion")


def _after_failure(t: Table, delays: Sequence[float], terminal: bool) -> dict[str, Any]:
    """Column values for a failed attempt: retry after delays[n-1], else failed."""
    give_up = text(":terminal OR attempts > :max_retries").bindparams(
        terminal=terminal, max_retries=len(delays)
    )
    delay = text(
        "make_interval(secs => (CAST(:delays AS double precision[]))[LEAST(attempts, :n)])"
    ).bindparams(delays=list(delays), n=len(delays))
    from sqlalchemy import case

    return {
        "status": case((give_up, JobStatus.FAILED.value), else_=JobStatus.PENDING.value),
        "next_attempt_at": case((give_up, t.c.next_attempt_at), else_=func.now() + delay),
        "finished_at": case((give_up, func.now()), else_=None),
        "lease_token": None,
        "lease_expires_at": None,
        "updated_at": func.now(),
    }


async def fail(
    session: AsyncSession,
    job: JobType,
    claim_: Claim,
    *,
    code: str,
    message: str,
    delays: Sequence[float],
    terminal: bool,
    actor: str,
) -> JobStatus:
    """running → pending (retry with the next delay) or failed; fenced by the lease."""
    t = job.table
    values = _after_failure(t, delays, terminal)
    values.update(last_error_code=code, last_error_message=message[:1000])
    row = (
        await session.execute(
            update(t)
            .where(
                job.where_key(claim_.key),
                t.c.status == JobStatus.RUNNING.value,
                t.c.lease_token == claim_.lease_token,
            )
            .values(**values)
            .returning(t.c.status, t.c.attempts)
        )
    ).one_or_none()
    if row is None:
        raise LeaseLost(f"{job.name} {claim_.key}: lease lost before recording failure")
    await ledger.record(
        session,
        job_type=job.name,
        key=claim_.key,
        from_status=JobStatus.RUNNING.value,
        to_status=row.status,
        attempt=row.attempts,
        actor=actor,
        error_code=code,
        error_message=message,
        request_id=claim_.request_id,
        correlation_id=claim_.correlation_id,
    )
    return JobStatus(row.status)


async def rescue_expired(
    session: AsyncSession,
    job: JobType,
    *,
    delays: Sequence[float],
    actor: str,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """Return running jobs whose lease expired to pending (or failed when exhausted)."""
    t = job.table
    expired = (
        select(*(t.c[name] for name in job.key_columns))
        .where(t.c.status == JobStatus.RUNNING.value, t.c.lease_expires_at < func.now())
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("expired")
    )
    values = _after_failure(t, delays, terminal=False)
    values.update(
        last_error_code="E_LEASE_EXPIRED", last_error_message="lease expired before completion"
    )
    rows = (
        await session.execute(
            update(t)
            .where(*(t.c[name] == expired.c[name] for name in job.key_columns))
            .values(**values)
            .returning(
                *(t.c[n] for n in job.key_columns),
                t.c.status,
                t.c.attempts,
                t.c.request_id,
                t.c.correlation_id,
            )
        )
    ).all()
    rescued = []
    for row in rows:
        key = job.key_of(row)
        await ledger.record(
            session,
            job_type=job.name,
            key=key,
            from_status=JobStatus.RUNNING.value,
            to_status=row.status,
            attempt=row.attempts,
            actor=actor,
            error_code="E_LEASE_EXPIRED",
            error_message="lease expired before completion",
            request_id=row.request_id,
            correlation_id=row.correlation_id,
        )
        rescued.append({**key, "status": row.status})
    return rescued


@dataclass(frozen=True)
class Requeued:
    from_status: str
    row: Any


async def reset_to_pending(
    session: AsyncSession,
    job: JobType,
    key: Mapping[str, Any],
    *,
    actor: str,
    request_id: str | None,
    correlation_id: str | None,
    insert_values: Mapping[str, Any] | None = None,
) -> Requeued | None:
    """pending|failed|completed → pending with attempts 0 (a running job is left alone).

    With `insert_values`, a missing job is created as pending (upsert). Returns None when
    the job is running (no change) or missing (without `insert_values`).
    """
    t = job.table
    reset = {
        "status": JobStatus.PENDING.value,
        "attempts": 0,
        "last_error_code": None,
        "last_error_message": None,
        "finished_at": None,
        "next_attempt_at": func.now(),
        "lease_token": None,
        "lease_owner": None,
        "lease_expires_at": None,
        "request_id": request_id,
        "correlation_id": correlation_id,
        "updated_at": func.now(),
        # The caller writes the job's message in this transaction (outbox).
        "dispatched_at": func.now(),
    }
    if insert_values is not None:
        # Lock-or-create first so the reset below sees a row either way.
        ins = (
            pg_insert(t)
            .values(
                **dict(key),
                **dict(insert_values),
                request_id=request_id,
                correlation_id=correlation_id,
                dispatched_at=func.now(),
            )
            .on_conflict_do_nothing()
            .returning(t.c.status)
        )
        created = (await session.execute(ins)).one_or_none()
        if created is not None:
            await ledger.record(
                session,
                job_type=job.name,
                key=key,
                from_status=None,
                to_status=JobStatus.PENDING.value,
                attempt=0,
                actor=actor,
                request_id=request_id,
                correlation_id=correlation_id,
            )
            row = (await session.execute(select(t).where(job.where_key(key)))).one()
            return Requeued(from_status="", row=row)
    # Lock the row first so the ledger can name the state it left (the UPDATE stays guarded).
    old_status = await session.scalar(
        select(t.c.status).where(job.where_key(key)).with_for_update()
    )
    if old_status is None or old_status == JobStatus.RUNNING.value:
        return None
    row = (
        await session.execute(
            update(t)
            .where(job.where_key(key), t.c.status == old_status)
            .values(**reset)
            .returning(*t.c)
        )
    ).one()
    await ledger.record(
        session,
        job_type=job.name,
        key=key,
        from_status=old_status,
        to_status=JobStatus.PENDING.value,
        attempt=0,
        actor=actor,
        request_id=request_id,
        correlation_id=correlation_id,
    )
    return Requeued(from_status=old_status, row=row)


async def counts_by_status(session: AsyncSession, job: JobType) -> dict[str, int]:
    t = job.table
    rows = (await session.execute(select(t.c.status, func.count()).group_by(t.c.status))).all()
    return {status: int(n) for status, n in rows}
