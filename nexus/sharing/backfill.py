"""Backfill jobs: materialise a shared library's media into a member's default library.

SPEC §7. The job row decides; messages on the backfill topic only name the tuple.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Unpack

from sqlalchemy import Table, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.db.tx import transaction
from nexus.db.types import Record, ResultRow
from nexus.errors import NotFound, TerminalError
from nexus.jobs import cancel as job_cancel
from nexus.jobs import machine, outbox
from nexus.jobs.machine import Claim, JobType, LeaseLost
from nexus.jobs.worker import JobError, OnFinish
from nexus.libraries.models import Membership
from nexus.messaging.messages import BackfillRequested, DomainEvent
from nexus.messaging.topics import Topics
from nexus.sharing.models import BackfillJob

_TABLE: Table = BackfillJob.__table__  # type: ignore[assignment]
JOB = JobType(
    name="backfill",
    table=_TABLE,
    key_columns=("default_library_id", "source_library_id", "user_id"),
)
CHUNK_SIZE = 5000


@dataclass(frozen=True)
class BackfillKey:
    default_library_id: uuid.UUID
    source_library_id: uuid.UUID
    user_id: uuid.UUID

    def as_dict(self) -> dict[str, uuid.UUID]:
        return {
            "default_library_id": self.default_library_id,
            "source_library_id": self.source_library_id,
            "user_id": self.user_id,
        }


def request_message(
    key: BackfillKey, request_id: str | None, correlation_id: str | None
) -> BackfillRequested:
    return BackfillRequested(**key.as_dict(), request_id=request_id, correlation_id=correlation_id)


class BackfillJobState(Record):
    """A backfill job as a requeue reports it (SPEC §7)."""

    default_library_id: uuid.UUID
    source_library_id: uuid.UUID
    user_id: uuid.UUID
    status: str
    attempts: int
    last_error_code: str | None
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, row: ResultRow) -> BackfillJobState:
        """From a full row of the job table."""
        columns = row._mapping
        return cls(**{name: columns[name] for name in _STATE_FIELDS})


_STATE_FIELDS = tuple(BackfillJobState.model_fields)


@dataclass(frozen=True)
class RequeueResult:
    job: BackfillJobState
    idempotent: bool
    outbox_id: int | None


async def requeue(
    session: AsyncSession,
    key: BackfillKey,
    topics: Topics,
    *,
    actor: str,
    request_id: str | None,
    correlation_id: str | None,
) -> RequeueResult:
    """SPEC §7 requeue: missing → NotFound; running → unchanged (idempotent); else reset.

    The reset and its outbox message are written in the caller's transaction.
    """
    reset = await machine.reset_to_pending(
        session,
        JOB,
        key.as_dict(),
        actor=actor,
        request_id=request_id,
        correlation_id=correlation_id,
    )
    if reset is None:
        current = (
            await session.execute(select(_TABLE).where(JOB.where_key(key.as_dict())))
        ).one_or_none()
        if current is None:
            raise NotFound("no backfill job for this tuple")
        return RequeueResult(BackfillJobState.of(current), idempotent=True, outbox_id=None)
    message = request_message(key, request_id, correlation_id)
    outbox_id = await outbox.enqueue(session, topics.backfill, message.key, message)
    return RequeueResult(BackfillJobState.of(reset.row), idempotent=False, outbox_id=outbox_id)


@dataclass(frozen=True)
class CancelResult:
    job: BackfillJobState
    from_status: str
    lease_owner: str | None  # the worker fenced out, when the job was running


CANCEL_EVENT = "backfill.cancelled"


async def cancel(
    session: AsyncSession,
    key: BackfillKey,
    topics: Topics,
    **request: Unpack[job_cancel.CancelRequest],
) -> CancelResult:
    """Operator cancel (SPEC §10): pending|running → cancelled, its ledger row and a
    `backfill.cancelled` event, in the caller's transaction. Missing → NotFound
    (E_NOT_FOUND); finished → Conflict (E_JOB_NOT_CANCELLABLE). A running attempt stops
    at its next chunk (the lease is gone): the chunks it committed stay, like a revoked
    membership's partial work until the next requeue completes it."""
    done = await job_cancel.cancel_job(
        session, JOB, key.as_dict(), not_found="no backfill job for this tuple", **request
    )
    event = DomainEvent(
        event=CANCEL_EVENT,
        entity_id=str(key.default_library_id),
        data={k: str(v) for k, v in key.as_dict().items()},
        request_id=request["request_id"],
        correlation_id=request["correlation_id"],
    )
    await outbox.enqueue(session, topics.events, event.key, event)
    return CancelResult(BackfillJobState.of(done.row), done.from_status, done.lease_owner)


_TUPLE = text(
    """
    SELECT d.id IS NOT NULL AS d_exists, d.is_default AS d_default,
           d.owner_user_id = :user_id AS d_owned,
           s.id IS NOT NULL AS s_exists, s.is_default AS s_default,
           -- The first chunk's membership lock, taken in the same round trip.
           (SELECT true FROM memberships mb WHERE mb.library_id = :source_library_id AND
               mb.user_id = :user_id
            FOR SHARE) AS is_member
    FROM (SELECT 1) one
    LEFT JOIN libraries d ON d.id = :default_library_id
    LEFT JOIN libraries s ON s.id = :source_library_id
    """
)


async def _validate_and_lock(session: AsyncSession, claim: Claim) -> bool:
    """SPEC §7 steps 2-3 in one query: `TerminalError(E_BACKFILL_TUPLE_INVALID)` naming
    why the tuple is invalid; else lock membership (S, u) like `_lock_membership` and
    return whether it exists."""
    d, s, u = (claim.key[k] for k in JOB.key_columns)
    row = (
        await session.execute(
            _TUPLE, {"default_library_id": d, "source_library_id": s, "user_id": u}
        )
    ).one()
    reason = None
    if not row.d_exists:
        reason = "default library missing"
    elif not row.d_default:
        reason = "default_library_id is not a default library"
    elif not row.d_owned:
        reason = "default library is not owned by the user"
    elif not row.s_exists:
        reason = "source library missing"
    elif row.s_default:
        reason = "source library is a default library"
    if reason is not None:
        raise TerminalError("E_BACKFILL_TUPLE_INVALID", reason)
    return bool(row.is_member)


async def _lock_membership(session: AsyncSession, source: uuid.UUID, user: uuid.UUID) -> bool:
    """Hold a lock on membership (S, u) that conflicts with its deletion; False if gone."""
    found = await session.scalar(
        select(Membership.user_id)
        .where(Membership.library_id == source, Membership.user_id == user)
        .with_for_update(read=True)
    )
    return found is not None


_MATERIALISE_CHUNK_SQL = """
    WITH chunk AS (
        SELECT media_id FROM library_media
        WHERE library_id = :source_library_id {after}
        ORDER BY media_id
        LIMIT :chunk_size
        -- Conflicts with a concurrent removal of m from S: either it waits for this chunk
        -- (and then deletes the edge written here) or this chunk skips the removed row.
        FOR KEY SHARE
    ),
    edges AS (
        INSERT INTO default_library_closure_edges (default_library_id, media_id, source_library_id)
        SELECT :default_library_id, media_id, :source_library_id FROM chunk
        ON CONFLICT DO NOTHING
    ),
    rows AS (
        -- DO UPDATE (not NOTHING) locks an existing default row, in media order, so a
        -- concurrent GC waits for this chunk and then sees the edge written here.
        INSERT INTO library_media (library_id, media_id)
        SELECT :default_library_id, media_id FROM chunk ORDER BY media_id
        ON CONFLICT (library_id, media_id) DO UPDATE SET created_at = library_media.created_at
    )
    SELECT (SELECT count(*) FROM chunk) AS n,
           (SELECT media_id FROM chunk ORDER BY media_id DESC LIMIT 1) AS last_id
"""
# Two statements rather than `(:after IS NULL OR media_id > :after)`: once the driver's
# prepared statement switches to a generic plan, that OR would make every chunk scan the
# source's index from its start (quadratic in the library size).
_FIRST_CHUNK = text(_MATERIALISE_CHUNK_SQL.format(after=""))
_NEXT_CHUNK = text(_MATERIALISE_CHUNK_SQL.format(after="AND media_id > :after"))


async def materialise(
    sessionmaker: async_sessionmaker[AsyncSession], claim: Claim, *, chunk_size: int = CHUNK_SIZE
) -> None:
    """Validate the tuple, then write edges and default rows in chunks.

    Each chunk is its own transaction that re-locks and re-checks the membership, then
    renews the lease (fenced by the token, after the membership lock: the lock order of
    member removal), so revocation wins between chunks, a rescued (zombie) attempt writes
    nothing, and a live attempt is never rescued however many chunks it takes. The tuple
    is validated in the first chunk's transaction, with its membership lock (one
    transaction and two round trips fewer per job).
    """
    d, s, u = (claim.key[k] for k in JOB.key_columns)
    after: uuid.UUID | None = None
    first = True
    while True:
        async with transaction(sessionmaker) as session:
            if first:
                member = await _validate_and_lock(session, claim)
                first = False
            else:
                member = await _lock_membership(session, s, u)
            if not member:
                return  # membership gone: nothing (more) to write; the job completes
            if not await machine.renew_lease(session, JOB, claim):
                raise LeaseLost("backfill lease lost between chunks")
            params: dict[str, object] = {
                "default_library_id": d,
                "source_library_id": s,
                "chunk_size": chunk_size,
            }
            if after is not None:
                params["after"] = after
            statement = _FIRST_CHUNK if after is None else _NEXT_CHUNK
            row = (await session.execute(statement, params)).one()
        if row.n < chunk_size:
            return
        after = row.last_id


def finish_event(topics: Topics) -> OnFinish:
    """An `on_finish` hook that announces the job's end on the events topic."""

    async def announce(
        session: AsyncSession, claim: Claim, status: str, error: JobError | None
    ) -> None:
        if status == "retry":
            return  # only outcomes are announced
        event = DomainEvent(
            event=f"backfill.{status}",
            entity_id=str(claim.key["default_library_id"]),
            data={k: str(v) for k, v in claim.key.items()},
            request_id=claim.request_id,
            correlation_id=claim.correlation_id,
        )
        await outbox.enqueue(session, topics.events, event.key, event)

    return announce
