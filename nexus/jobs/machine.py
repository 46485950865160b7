"""Guarded job transitions with fenced leases, shared by every job type.

Each transition is one `UPDATE ... WHERE <key> AND status = ANY(<expected>) [AND
lease_token = <mine>] RETURNING` plus its `job_events` row, in the caller's transaction.
A miss is never ignored silently: callers get `None`/`False` for the no-op cases the
protocol allows (duplicate or stale messages) and `LeaseLost` when a fenced write finds
that its lease was taken away.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Table,
    and_,
    func,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.elements import ColumnElement, TextClause

from nexus.jobs import ledger
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
    # How long the job had been due when this claim took it (pending → running wait).
    queued_seconds: float | None = None


def _key_sql(job: JobType) -> str:
    return " AND ".join(f"{name} = :k_{name}" for name in job.key_columns)


def _key_params(job: JobType, key: Mapping[str, Any]) -> dict[str, Any]:
    return {f"k_{name}": key[name] for name in job.key_columns}


# The hot transitions are fixed SQL per job type, built once: composing them with Core
# constructs on every call cost more CPU than the database spent running them (about half
# of the ingest worker's database time; bench/README.md). Each transition and its ledger
# row are ONE statement: `WITH moved AS (UPDATE ... RETURNING), ledger AS (INSERT INTO
# job_events ... SELECT ... FROM moved RETURNING ...) SELECT ... FROM ledger`; when the
# guarded UPDATE matches nothing, nothing is inserted and no row is returned.
_LEDGER_FROM_MOVED = """
    , ledger AS (
        INSERT INTO job_events (job_type, job_key, from_status, to_status, attempt, actor,
                                request_id, correlation_id)
        SELECT :job_type, CAST(:job_key AS jsonb), '{from_}', '{to}', attempts, :actor,
               {ids}
        FROM moved
        RETURNING attempt, request_id, correlation_id
    )
"""


@dataclass(frozen=True)
class Rider:
    """Writes that ride in a transition's own statement: one round trip, and atomic with it.

    `ctes` are extra `name AS (...)` items of the statement's WITH list (comma-separated).
    They see the transitioned job row as `moved` and must guard every write with `EXISTS
    (SELECT 1 FROM moved)`, so nothing is written when the transition misses (a stale
    claim, a lost lease). They see the job key as `:k_<column>`; their own parameters are
    `params`, named `r_...` to stay clear of the machine's. The first row of the CTE named
    `result` comes back to the caller as a dict (None when it returned no row).

    `guard`, a SQL condition, joins the transition's own WHERE: when it does not hold the
    transition misses like a lost lease (`LeaseLost` on completion), so the job is not
    finished without the rider's writes (the ingest completion requires its media to
    still be extracting).
    """

    ctes: str
    result: str
    params: Mapping[str, Any] = field(default_factory=dict)
    guard: str = "true"

    def __post_init__(self) -> None:
        clashing = [name for name in self.params if not name.startswith("r_")]
        if clashing:
            raise ValueError(f"rider parameters must start with r_: {clashing}")


def _with_rider(
    moved_and_ledger: str, rider_ctes: str | None, result: str | None, extra: str = ""
) -> TextClause:
    """The statement's final SELECT; `extra` adds columns (read from `moved`)."""
    if rider_ctes is None:
        return text(
            moved_and_ledger + f" SELECT attempt, request_id, correlation_id{extra} FROM ledger"
        )
    return text(
        f"""{moved_and_ledger}, {rider_ctes}
        SELECT attempt, request_id, correlation_id{extra},
               (SELECT to_jsonb(r) FROM {result} r LIMIT 1) AS rider
        FROM ledger
        """
    )


@functools.cache
def _claim_sql(
    job: JobType, rider_ctes: str | None = None, result: str | None = None, guard: str = "true"
) -> TextClause:
    return _with_rider(
        f"""
        WITH moved AS (
            UPDATE {job.table.name} SET status = 'running', attempts = attempts + 1,
                lease_token = :token, lease_owner = :owner,
                lease_expires_at = now() + make_interval(secs => :lease), updated_at = now()
            WHERE {_key_sql(job)} AND status = 'pending' AND next_attempt_at <= now()
                AND ({guard})
            RETURNING attempts, request_id, correlation_id,
                CAST(extract(epoch FROM now() - next_attempt_at) AS double precision)
                    AS queued_seconds
        )
        """
        + _LEDGER_FROM_MOVED.format(
            from_="pending", to="running", ids="request_id, correlation_id"
        ),
        rider_ctes,
        result,
        ", (SELECT queued_seconds FROM moved) AS queued_seconds",
    )


@functools.cache
def _complete_sql(
    job: JobType, rider_ctes: str | None = None, result: str | None = None, guard: str = "true"
) -> TextClause:
    return _with_rider(
        f"""
        WITH moved AS (
            UPDATE {job.table.name} SET status = 'completed', lease_token = NULL,
                lease_expires_at = NULL, last_error_code = NULL, last_error_message = NULL,
                finished_at = now(), updated_at = now()
            WHERE {_key_sql(job)} AND status = 'running' AND lease_token = :token
                AND ({guard})
            RETURNING attempts
        )
        """
        # The claim's ids, as the ledger always records them for this attempt.
        + _LEDGER_FROM_MOVED.format(
            from_="running",
            to="completed",
            ids="CAST(:request_id AS varchar), CAST(:correlation_id AS varchar)",
        ),
        rider_ctes,
        result,
    )


@functools.cache
def _holds_sql(job: JobType) -> TextClause:
    return text(
        f"SELECT 1 FROM {job.table.name} WHERE {_key_sql(job)} "
        "AND status = 'running' AND lease_token = :token FOR UPDATE"
    )


@functools.cache
def _renew_sql(job: JobType) -> TextClause:
    return text(
        f"""
        UPDATE {job.table.name} SET lease_expires_at = CASE
            WHEN CAST(:renew AS double precision) IS NULL THEN lease_expires_at
            ELSE greatest(lease_expires_at, now() + make_interval(secs => :renew)) END
        WHERE {_key_sql(job)} AND status = 'running' AND lease_token = :token
        RETURNING 1
        """
    )


def create_ctes(job: JobType, extra: tuple[str, ...], *, when: str = "true") -> str:
    """`job_new` and `job_ledger`, items of a WITH list: insert the pending job (if absent,
    and only when the SQL condition `when` holds) and its ledger row. Parameters: see
    `create_params`. A caller composing a bigger statement (the API's from_url) puts them
    after its own CTEs, so creating the job costs no round trip of its own."""
    columns = [*job.key_columns, *extra]
    values = [*(f":k_{c}" for c in job.key_columns), *(f":v_{c}" for c in extra)]
    return f"""
        job_new AS (
            INSERT INTO {job.table.name} ({", ".join(columns)}, request_id, correlation_id,
                                          dispatched_at)
            SELECT {", ".join(values)}, CAST(:request_id AS varchar),
                   CAST(:correlation_id AS varchar), now()
            WHERE {when}
            ON CONFLICT DO NOTHING
            RETURNING *
        ), job_ledger AS (
            INSERT INTO job_events (job_type, job_key, from_status, to_status, attempt, actor,
                                    request_id, correlation_id)
            SELECT :job_type, CAST(:job_key AS jsonb), NULL, 'pending', 0, :actor,
                   request_id, correlation_id
            FROM job_new
        )
    """


def create_params(
    job: JobType,
    key: Mapping[str, Any],
    *,
    actor: str,
    request_id: str | None,
    correlation_id: str | None,
    insert_values: Mapping[str, Any],
) -> dict[str, Any]:
    return {
        **_key_params(job, key),
        **{f"v_{name}": value for name, value in insert_values.items()},
        **_ledger_params(job, key, actor),
        "request_id": request_id,
        "correlation_id": correlation_id,
    }


@functools.cache
def _create_sql(job: JobType, extra: tuple[str, ...]) -> TextClause:
    """Insert a pending job (if absent) and its ledger row; returns the new row."""
    return text(f"WITH {create_ctes(job, extra)} SELECT * FROM job_new")


def _ledger_params(job: JobType, key: Mapping[str, Any], actor: str) -> dict[str, Any]:
    return {
        "job_type": job.name,
        "job_key": json.dumps(ledger.json_key(key)),
        "actor": actor[:255],
    }


async def claim(
    session: AsyncSession | AsyncConnection,
    job: JobType,
    key: Mapping[str, Any],
    *,
    owner: str,
    lease_seconds: float,
) -> Claim | None:
    """pending → running with a fresh lease, only if due. None: duplicate/stale/not due.

    One statement: on an autocommit connection it is its own transaction."""
    claimed = await claim_with(
        session, job, key, owner=owner, lease_seconds=lease_seconds, rider=None
    )
    return None if claimed is None else claimed[0]


async def claim_with(
    session: AsyncSession | AsyncConnection,
    job: JobType,
    key: Mapping[str, Any],
    *,
    owner: str,
    lease_seconds: float,
    rider: Rider | None,
) -> tuple[Claim, dict[str, Any] | None] | None:
    """`claim`, with `rider`'s writes in the same statement; also returns its result row."""
    token = uuid.uuid4()
    params = {
        **_key_params(job, key),
        **_ledger_params(job, key, owner),
        "token": token,
        "owner": owner[:255],
        "lease": float(lease_seconds),
    }
    sql = (
        _claim_sql(job) if rider is None else _claim_sql(job, rider.ctes, rider.result, rider.guard)
    )
    if rider is not None:
        params.update(rider.params)
    row = (await session.execute(sql, params)).one_or_none()
    if row is None:
        return None
    queued = None if row.queued_seconds is None else max(0.0, float(row.queued_seconds))
    claim_ = Claim(
        dict(key), token, row.attempt, row.request_id, row.correlation_id, lease_seconds, queued
    )
    return claim_, (row.rider if rider is not None else None)


async def still_holds(session: AsyncSession, job: JobType, claim_: Claim) -> bool:
    """True while this attempt's lease is current (use before fenced side effects)."""
    params = {**_key_params(job, claim_.key), "token": claim_.lease_token}
    return await session.scalar(_holds_sql(job), params) is not None


async def renew_lease(
    session: AsyncSession, job: JobType, claim_: Claim, *, lease_seconds: float | None = None
) -> bool:
    """Extend this attempt's lease (fenced by the token); False when it was taken away.

    Long work calls this once per step (e.g. per backfill chunk), in the step's
    transaction, so a live attempt is never rescued however long the whole job takes; the
    row lock it takes also holds off a concurrent rescue until the step commits. The
    lease never shrinks: it becomes max(current expiry, now + lease_seconds).
    """
    seconds = lease_seconds if lease_seconds is not None else claim_.lease_seconds
    params = {
        **_key_params(job, claim_.key),
        "token": claim_.lease_token,
        "renew": None if seconds is None else float(seconds),
    }
    return await session.scalar(_renew_sql(job), params) is not None


async def complete(
    session: AsyncSession | AsyncConnection,
    job: JobType,
    claim_: Claim,
    *,
    actor: str,
    rider: Rider | None = None,
) -> dict[str, Any] | None:
    """running → completed, fenced by the lease token. Raises `LeaseLost` on a miss.

    With `rider`, its writes are part of the same statement (nothing of them is written on
    a miss); returns its result row."""
    params = {
        **_key_params(job, claim_.key),
        **_ledger_params(job, claim_.key, actor),
        "token": claim_.lease_token,
        "request_id": claim_.request_id,
        "correlation_id": claim_.correlation_id,
    }
    sql = (
        _complete_sql(job)
        if rider is None
        else _complete_sql(job, rider.ctes, rider.result, rider.guard)
    )
    if rider is not None:
        params.update(rider.params)
    row = (await session.execute(sql, params)).one_or_none()
    if row is None:
        raise LeaseLost(f"{job.name} {claim_.key}: lease lost before completion")
    return row.rider if rider is not None else None


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
        params = create_params(
            job,
            key,
            actor=actor,
            request_id=request_id,
            correlation_id=correlation_id,
            insert_values=insert_values,
        )
        created = (
            await session.execute(_create_sql(job, tuple(insert_values)), params)
        ).one_or_none()
        if created is not None:
            return Requeued(from_status="", row=created)
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


async def release_held(
    session: AsyncSession, job: JobType, *, owner: str, actor: str = "release"
) -> list[Any]:
    """running → pending for every job `owner` still leases (a draining worker's last act).

    The attempt is given back (the job did not fail: its worker is leaving), the lease is
    cleared so the job is due at once, and each move is a ledger row with actor `release`.
    Work still running in the leaving worker is fenced out: its lease token is gone. Returns
    the released rows (key columns, attempts, request/correlation ids) so the caller can
    re-dispatch their messages in the same transaction."""
    t = job.table
    rows = (
        await session.execute(
            update(t)
            .where(t.c.status == JobStatus.RUNNING.value, t.c.lease_owner == owner)
            .values(
                status=JobStatus.PENDING.value,
                attempts=func.greatest(t.c.attempts - 1, 0),
                lease_token=None,
                lease_owner=None,
                lease_expires_at=None,
                next_attempt_at=func.now(),
                dispatched_at=func.now(),
                updated_at=func.now(),
            )
            .returning(*t.c)
        )
    ).all()
    for row in rows:
        await ledger.record(
            session,
            job_type=job.name,
            key=job.key_of(row),
            from_status=JobStatus.RUNNING.value,
            to_status=JobStatus.PENDING.value,
            attempt=row.attempts,
            actor=actor,
            request_id=row.request_id,
            correlation_id=row.correlation_id,
        )
    return list(rows)
