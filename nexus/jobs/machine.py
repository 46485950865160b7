"""Guarded job transitions with fenced leases, shared by every job type.

Each transition is one `UPDATE ... WHERE <key> AND status IN (<expected>) [AND
lease_token = <mine>] RETURNING` plus its `job_events` row, in the caller's transaction,
rendered by a `Transition` of `nexus.jobs.states.JOB_STATES` (CLAIM, COMPLETE, RETRY /
GIVE_UP, REQUEUE, CANCEL, RELEASE below): a move the state table does not allow cannot be built.
A miss is never ignored silently: callers get `None`/`False` for the no-op cases the
protocol allows (duplicate or stale messages, requeue of a running job) and `LeaseLost`
when a fenced write finds that its lease was taken away.

The transitions callers make in their own unit of work (create, REQUEUE, CANCEL) are noted
on the session for `nexus_job_transitions_total`, counted once it commits
(`nexus.metrics.note_transition`); the worker counts those of its attempts itself.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Table, and_, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.elements import ColumnElement, TextClause

from nexus.db import transitions
from nexus.db.transitions import StateTable, Transition
from nexus.db.types import BindParams, JsonObject, ResultRow
from nexus.jobs import ledger
from nexus.jobs.states import JOB_STATES, REQUEUEABLE, JobStatus
from nexus.metrics import note_transition
from nexus.workers import service as workers_service

CLAIM = Transition(JOB_STATES, frozenset({JobStatus.PENDING}), JobStatus.RUNNING)
COMPLETE = Transition(JOB_STATES, frozenset({JobStatus.RUNNING}), JobStatus.COMPLETED)
# A failed attempt: retry later, or give up (terminal error, attempts exhausted, rescue).
RETRY = Transition(JOB_STATES, frozenset({JobStatus.RUNNING}), JobStatus.PENDING)
GIVE_UP = Transition(JOB_STATES, frozenset({JobStatus.RUNNING}), JobStatus.FAILED)
REQUEUE = Transition(JOB_STATES, REQUEUEABLE, JobStatus.PENDING)
# An operator stops a job for good (until a requeue); its worker is fenced out.
CANCEL = Transition(
    JOB_STATES, frozenset({JobStatus.PENDING, JobStatus.RUNNING}), JobStatus.CANCELLED
)
# A draining worker gives its running jobs back (the attempt is not counted).
RELEASE = Transition(JOB_STATES, frozenset({JobStatus.RUNNING}), JobStatus.PENDING)


# A job's key: its key columns (all uuids) by name, e.g. {"media_id": ...}.
JobKey = Mapping[str, uuid.UUID]


class LeaseLost(Exception):
    """A fenced write found another lease (or none): this attempt must stop writing."""


@dataclass(frozen=True)
class JobType:
    name: str
    table: Table
    key_columns: tuple[str, ...]

    def where_key(self, key: JobKey) -> ColumnElement[bool]:
        return and_(*(self.table.c[name] == key[name] for name in self.key_columns))

    def key_of(self, row: ResultRow) -> dict[str, uuid.UUID]:
        return {name: getattr(row, name) for name in self.key_columns}

    @functools.cached_property
    def states(self) -> StateTable[JobStatus]:
        """The job state machine on this job's table."""
        return JOB_STATES.bound(self.table.name, self.key_columns)


@dataclass(frozen=True)
class DueJob:
    """A pending job whose message is due (scheduled, or released by a draining worker):
    what its job type's message is made of."""

    key: dict[str, uuid.UUID]
    attempts: int
    request_id: str | None
    correlation_id: str | None

    @classmethod
    def of(cls, job: JobType, row: ResultRow) -> DueJob:
        return cls(job.key_of(row), row.attempts, row.request_id, row.correlation_id)


@dataclass(frozen=True)
class Claim:
    key: dict[str, uuid.UUID]
    lease_token: uuid.UUID
    attempt: int
    request_id: str | None
    correlation_id: str | None
    # The lease length this attempt was granted; `renew_lease` extends by the same amount.
    lease_seconds: float | None = None
    # How long the job had been due when this claim took it (pending → running wait).
    queued_seconds: float | None = None


def _key_sql(job: JobType) -> str:
    return job.states.key_sql()


def _key_params(job: JobType, key: JobKey) -> BindParams:
    return {f"key_{name}": key[name] for name in job.key_columns}


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
        SELECT :job_type, CAST(:job_key AS jsonb), {from_}, {to}, attempts, :actor,
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
    claim, a lost lease). They see the job key as `:key_<column>`; their own parameters are
    `params`, named `r_...` to stay clear of the machine's. The first row of the CTE named
    `result` comes back to the caller as a dict (None when it returned no row).

    `guard`, a SQL condition, joins the transition's own WHERE: when it does not hold the
    transition misses like a lost lease (`LeaseLost` on completion), so the job is not
    finished without the rider's writes (the ingest completion requires its media to
    still be extracting).
    """

    ctes: str
    result: str
    params: Mapping[str, object] = field(default_factory=dict)
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


def _ledger_cte(move: Transition[JobStatus], ids: str) -> str:
    """The `job_events` row of a one-from-state transition, written from `moved`."""
    (from_state,) = move.from_states
    return _LEDGER_FROM_MOVED.format(
        from_=f"'{from_state.value}'", to=f"'{move.to.value}'", ids=ids
    )


@functools.cache
def _claim_sql(
    job: JobType, rider_ctes: str | None = None, result: str | None = None, guard: str = "true"
) -> TextClause:
    moved = CLAIM.on(job.states).cte(
        "moved",
        where=_key_sql(job),
        set_also="attempts = attempts + 1, lease_token = :token, lease_owner = :owner, "
        "lease_expires_at = now() + make_interval(secs => :lease_seconds), updated_at = now()",
        guard=f"next_attempt_at <= now() AND ({guard})",
        returning="attempts, request_id, correlation_id, "
        "CAST(extract(epoch FROM now() - next_attempt_at) AS double precision) AS queued_seconds",
    )
    return _with_rider(
        f"WITH {moved}" + _ledger_cte(CLAIM, "request_id, correlation_id"),
        rider_ctes,
        result,
        ", (SELECT queued_seconds FROM moved) AS queued_seconds",
    )


@functools.cache
def _complete_sql(
    job: JobType, rider_ctes: str | None = None, result: str | None = None, guard: str = "true"
) -> TextClause:
    moved = COMPLETE.on(job.states).cte(
        "moved",
        where=_key_sql(job),
        set_also="lease_token = NULL, lease_expires_at = NULL, last_error_code = NULL, "
        "last_error_message = NULL, finished_at = now(), updated_at = now()",
        guard=f"lease_token = :token AND ({guard})",
        returning="attempts",
    )
    # The claim's ids, as the ledger always records them for this attempt.
    ids = "CAST(:request_id AS varchar), CAST(:correlation_id AS varchar)"
    return _with_rider(f"WITH {moved}" + _ledger_cte(COMPLETE, ids), rider_ctes, result)


@functools.cache
def _holds_sql(job: JobType) -> TextClause:
    return text(
        f"SELECT 1 FROM {job.table.name} WHERE {_key_sql(job)} "
        f"AND {COMPLETE.guard()} AND lease_token = :token FOR UPDATE"
    )


@functools.cache
def _renew_sql(job: JobType) -> TextClause:
    # Not a transition (the status stays running): only the lease is extended.
    return text(
        f"""
        UPDATE {job.table.name} SET lease_expires_at = CASE
            WHEN CAST(:renew_seconds AS double precision) IS NULL THEN lease_expires_at
            ELSE greatest(lease_expires_at, now() + make_interval(secs => :renew_seconds)) END
        WHERE {_key_sql(job)} AND {COMPLETE.guard()} AND lease_token = :token
        RETURNING 1
        """
    )


def create_ctes(job: JobType, extra: tuple[str, ...], *, when: str = "true") -> str:
    """`job_new` and `job_ledger`, items of a WITH list: insert the pending job (if absent,
    and only when the SQL condition `when` holds) and its ledger row. Parameters: see
    `create_params`. A caller composing a bigger statement (the API's from_url) puts them
    after its own CTEs, so creating the job costs no round trip of its own."""
    columns = [*job.key_columns, *extra]
    values = [*(f":key_{c}" for c in job.key_columns), *(f":value_{c}" for c in extra)]
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
    key: JobKey,
    *,
    actor: str,
    request_id: str | None,
    correlation_id: str | None,
    insert_values: Mapping[str, object],
) -> BindParams:
    return {
        **_key_params(job, key),
        **{f"value_{name}": value for name, value in insert_values.items()},
        **_ledger_params(job, key, actor),
        "request_id": request_id,
        "correlation_id": correlation_id,
    }


@functools.cache
def _create_sql(job: JobType, extra: tuple[str, ...]) -> TextClause:
    """Insert a pending job (if absent) and its ledger row; returns the new row."""
    return text(f"WITH {create_ctes(job, extra)} SELECT * FROM job_new")


def _ledger_params(job: JobType, key: JobKey, actor: str) -> BindParams:
    return {
        "job_type": job.name,
        "job_key": json.dumps(ledger.json_key(key)),
        "actor": actor[:255],
    }


async def claim(
    session: AsyncSession | AsyncConnection,
    job: JobType,
    key: JobKey,
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
    key: JobKey,
    *,
    owner: str,
    lease_seconds: float,
    rider: Rider | None,
) -> tuple[Claim, JsonObject | None] | None:
    """`claim`, with `rider`'s writes in the same statement; also returns its result row."""
    token = uuid.uuid4()
    params = {
        **_key_params(job, key),
        **_ledger_params(job, key, owner),
        "token": token,
        "owner": owner[:255],
        "lease_seconds": float(lease_seconds),
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
        "renew_seconds": None if seconds is None else float(seconds),
    }
    return await session.scalar(_renew_sql(job), params) is not None


async def complete(
    session: AsyncSession | AsyncConnection,
    job: JobType,
    claim_: Claim,
    *,
    actor: str,
    rider: Rider | None = None,
) -> JsonObject | None:
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


# A failed attempt gives up on a terminal error or when its attempts are exhausted; else it
# is retried after delays[attempts - 1] (the last delay repeats).
_GIVES_UP = "(:terminal OR attempts > :max_retries)"


def _after_failure(message_sql: str = ":error_message") -> str:
    """The assignments of a failed attempt (retry later or give up); the error message is
    the SQL expression `message_sql`."""
    return f"""
    next_attempt_at = CASE WHEN {_GIVES_UP} THEN next_attempt_at ELSE now() + make_interval(
        secs => (CAST(:delays AS double precision[]))[LEAST(attempts, :max_retries)]) END,
    finished_at = CASE WHEN {_GIVES_UP} THEN now() END,
    lease_token = NULL, lease_expires_at = NULL, updated_at = now(),
    last_error_code = :error_code, last_error_message = {message_sql}
"""


_AFTER_FAILURE = _after_failure()


def _failure_params(delays: Sequence[float], terminal: bool) -> BindParams:
    return {"terminal": terminal, "max_retries": len(delays), "delays": list(delays)}


@functools.cache
def _fail_sql(job: JobType) -> TextClause:
    return text(
        transitions.either(_GIVES_UP, GIVE_UP.on(job.states), RETRY.on(job.states)).update_sql(
            where=_key_sql(job),
            set_also=_AFTER_FAILURE,
            guard="lease_token = :token",
            returning="status, attempts",
        )
    )


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
    params = {
        **_key_params(job, claim_.key),
        **_failure_params(delays, terminal),
        "token": claim_.lease_token,
        "error_code": code,
        "error_message": message[:1000],
    }
    row = (await session.execute(_fail_sql(job), params)).one_or_none()
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


# Why a running job is rescued, per row (its lease owner named): the lease ran out, or its
# owner is a known worker that stopped or missed its heartbeats (`dead_workers_sql`).
_RESCUE_MESSAGE = (
    "CASE WHEN rescued.lease_expired "
    "THEN 'lease of ' || coalesce(rescued.lease_owner, '?') || ' expired before completion' "
    "ELSE 'worker ' || coalesce(rescued.lease_owner, '?') "
    "|| ' stopped or missed its heartbeats; lease taken back' END"
)


@functools.cache
def _rescue_sql(job: JobType, by_heartbeat: bool) -> TextClause:
    table = job.table.name
    keys = ", ".join(job.key_columns)
    lost = "lease_expires_at < now()"
    if by_heartbeat:
        lost = f"({lost} OR {workers_service.dead_workers_sql()})"
    rescued = (
        f"SELECT {keys}, lease_owner, lease_expires_at < now() AS lease_expired FROM {table} "
        f"WHERE {COMPLETE.guard()} AND {lost} LIMIT :batch_size FOR UPDATE SKIP LOCKED"
    )
    joined = " AND ".join(f"{table}.{name} = rescued.{name}" for name in job.key_columns)
    # Qualified: `rescued` has the key columns too.
    move = transitions.either(_GIVES_UP, GIVE_UP.on(job.states), RETRY.on(job.states))
    update = move.update_sql(
        where=joined,
        set_also=_after_failure(_RESCUE_MESSAGE),
        returning=", ".join(
            [
                *(f"{table}.{name}" for name in job.key_columns),
                *(f"{table}.{name}" for name in _RESCUED_COLUMNS),
                "rescued.lease_owner AS lost_owner",
            ]
        ),
        from_="rescued",
        qualifier=table,
    )
    return text(f"WITH rescued AS ({rescued}) {update}")


_RESCUED_COLUMNS = ("status", "attempts", "request_id", "correlation_id", "last_error_message")
_EXPIRED_CODE = "E_LEASE_EXPIRED"


async def rescue_expired(
    session: AsyncSession,
    job: JobType,
    *,
    delays: Sequence[float],
    actor: str,
    limit: int = 500,
    dead_after_seconds: float | None = None,
) -> list[dict[str, object]]:
    """Return running jobs whose lease was lost to pending (or failed when exhausted).

    A lease is lost when it expired, or (with `dead_after_seconds`) at once when its owner
    is a known worker that stopped or has not beaten for that long (ARCHITECTURE §3b).
    The job's `last_error_message` and its ledger row name the owner whose lease was lost;
    the code is `E_LEASE_EXPIRED` either way. Each returned dict has the key, `status`
    and `lost_owner`."""
    params: dict[str, object] = {
        **_failure_params(delays, terminal=False),
        "batch_size": limit,
        "error_code": _EXPIRED_CODE,
    }
    if dead_after_seconds is not None:
        params["dead_after_seconds"] = float(dead_after_seconds)
    sql = _rescue_sql(job, dead_after_seconds is not None)
    rows = (await session.execute(sql, params)).all()
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
            error_code=_EXPIRED_CODE,
            error_message=row.last_error_message,
            request_id=row.request_id,
            correlation_id=row.correlation_id,
        )
        rescued.append({**key, "status": row.status, "lost_owner": row.lost_owner})
    return rescued


@dataclass(frozen=True)
class Requeued:
    from_status: str | None  # None: the job was created
    row: ResultRow  # the job row after the reset (every column)


_RESET = (
    "attempts = 0, last_error_code = NULL, last_error_message = NULL, finished_at = NULL, "
    "next_attempt_at = now(), lease_token = NULL, lease_owner = NULL, "
    "lease_expires_at = NULL, request_id = :request_id, correlation_id = :correlation_id, "
    # The caller writes the job's message in this transaction (outbox).
    "updated_at = now(), dispatched_at = now()"
)


async def reset_to_pending(
    session: AsyncSession,
    job: JobType,
    key: JobKey,
    *,
    actor: str,
    request_id: str | None,
    correlation_id: str | None,
    insert_values: Mapping[str, object] | None = None,
) -> Requeued | None:
    """REQUEUE: pending|failed|completed → pending with attempts 0. A running job is left
    alone and a missing one (without `insert_values`) not created: both return None, the
    no-ops the protocol allows.

    With `insert_values`, a missing job is created as pending (upsert).
    """
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
            note_transition(session, job.name, None, REQUEUE.to)
            return Requeued(from_status=None, row=created)
    t = job.table
    # Lock the row first so the ledger can name the state it left.
    old_status = await session.scalar(
        select(t.c.status).where(job.where_key(key)).with_for_update()
    )
    if old_status is None or JobStatus(old_status) not in REQUEUE.from_states:
        return None
    # Under the row lock the guard holds: a miss raises TransitionMissed (never silence).
    moved = await transitions.apply(
        session,
        transitions.Apply(
            REQUEUE.on(job.states),
            set_also=_RESET,
            returning="*",
            params={"request_id": request_id, "correlation_id": correlation_id},
        ),
        key,
    )
    assert isinstance(moved, transitions.Moved)
    await ledger.record(
        session,
        job_type=job.name,
        key=key,
        from_status=old_status,
        to_status=REQUEUE.to.value,
        attempt=0,
        actor=actor,
        request_id=request_id,
        correlation_id=correlation_id,
    )
    note_transition(session, job.name, old_status, REQUEUE.to)
    return Requeued(from_status=old_status, row=moved.row)


@dataclass(frozen=True)
class Cancelled:
    from_status: str
    lease_owner: str | None  # the worker fenced out, when the job was running
    row: ResultRow  # the job row after the cancel (every column)


class NotCancellable(Exception):
    """The job is finished already (completed, failed or cancelled): nothing to cancel."""

    def __init__(self, status: str) -> None:
        super().__init__(f"the job is {status}")
        self.status = status


_CANCEL_SET = (
    "finished_at = now(), lease_token = NULL, lease_expires_at = NULL, "
    "last_error_code = :error_code, last_error_message = :error_message, updated_at = now()"
)
CANCELLED_CODE = "E_CANCELLED"


async def cancel(
    session: AsyncSession,
    job: JobType,
    key: JobKey,
    *,
    actor: str,
    message: str,
    request_id: str | None,
    correlation_id: str | None,
) -> Cancelled | None:
    """CANCEL: pending|running → cancelled (finished, `E_CANCELLED` with `message`), in the
    caller's transaction with its ledger row. None: no such job. `NotCancellable`: the job
    is finished already.

    The lease token is cleared, so a running attempt's next fenced write (lease renewal,
    completion, failure) raises `LeaseLost` and writes nothing; the row lock taken here
    waits for a chunk in progress, so no write of the attempt commits after the cancel.
    `lease_owner` stays on the row: it names the worker that was running it."""
    t = job.table
    # Lock the row first so the ledger can name the state it left.
    current = (
        await session.execute(
            select(t.c.status, t.c.lease_owner).where(job.where_key(key)).with_for_update()
        )
    ).one_or_none()
    if current is None:
        return None
    if JobStatus(current.status) not in CANCEL.from_states:
        raise NotCancellable(current.status)
    moved = await transitions.apply(
        session,
        transitions.Apply(
            CANCEL.on(job.states),
            set_also=_CANCEL_SET,
            returning="*",
            params={"error_code": CANCELLED_CODE, "error_message": message[:1000]},
        ),
        key,
    )
    assert isinstance(moved, transitions.Moved)  # under the row lock the guard holds
    await ledger.record(
        session,
        job_type=job.name,
        key=key,
        from_status=current.status,
        to_status=CANCEL.to.value,
        attempt=moved.row.attempts,
        actor=actor,
        error_code=CANCELLED_CODE,
        error_message=message,
        request_id=request_id,
        correlation_id=correlation_id,
    )
    note_transition(session, job.name, current.status, CANCEL.to)
    owner = current.lease_owner if current.status == JobStatus.RUNNING else None
    return Cancelled(from_status=current.status, lease_owner=owner, row=moved.row)


async def counts_by_status(session: AsyncSession, job: JobType) -> dict[str, int]:
    t = job.table
    rows = (await session.execute(select(t.c.status, func.count()).group_by(t.c.status))).all()
    return {status: int(n) for status, n in rows}


@functools.cache
def _release_sql(job: JobType) -> TextClause:
    return text(
        RELEASE.on(job.states).update_sql(
            where="lease_owner = :owner",
            set_also="attempts = greatest(attempts - 1, 0), lease_token = NULL, "
            "lease_owner = NULL, lease_expires_at = NULL, next_attempt_at = now(), "
            "dispatched_at = now(), updated_at = now()",
            returning=f"{', '.join(job.key_columns)}, attempts, request_id, correlation_id",
        )
    )


async def release_held(
    session: AsyncSession, job: JobType, *, owner: str, actor: str = "release"
) -> list[DueJob]:
    """RELEASE (running → pending) for every job `owner` still leases (a draining worker's
    last act); none held is a no-op (an empty list).

    The attempt is given back (the job did not fail: its worker is leaving), the lease is
    cleared so the job is due at once, and each move is a ledger row with actor `release`.
    Work still running in the leaving worker is fenced out: its lease token is gone. Returns
    the released jobs so the caller can re-dispatch their messages in the same transaction."""
    rows = (await session.execute(_release_sql(job), {"owner": owner[:255]})).all()
    for row in rows:
        await ledger.record(
            session,
            job_type=job.name,
            key=job.key_of(row),
            from_status=JobStatus.RUNNING.value,
            to_status=RELEASE.to.value,
            attempt=row.attempts,
            actor=actor,
            request_id=row.request_id,
            correlation_id=row.correlation_id,
        )
    return [DueJob.of(job, row) for row in rows]
