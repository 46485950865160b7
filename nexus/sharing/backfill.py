"""Backfill jobs: materialise a shared library's media into a member's default library.

SPEC §7. The job row decides; messages on the backfill topic only name the tuple.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.db.tx import transaction
from nexus.errors import NotFound, TerminalError
from nexus.jobs import machine, outbox
from nexus.jobs.machine import Claim, JobType, LeaseLost
from nexus.jobs.worker import OnFinish
from nexus.libraries.models import Library, Membership
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


@dataclass(frozen=True)
class RequeueResult:
    job: dict[str, Any]
    idempotent: bool
    outbox_id: int | None


def job_out(row: Any) -> dict[str, Any]:
    return {
        "default_library_id": row.default_library_id,
        "source_library_id": row.source_library_id,
        "user_id": row.user_id,
        "status": row.status,
        "attempts": row.attempts,
        "last_error_code": row.last_error_code,
        "updated_at": row.updated_at,
        "finished_at": row.finished_at,
    }


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
        return RequeueResult(job=job_out(current), idempotent=True, outbox_id=None)
    message = request_message(key, request_id, correlation_id)
    outbox_id = await outbox.enqueue(session, topics.backfill, message.key, message)
    return RequeueResult(job=job_out(reset.row), idempotent=False, outbox_id=outbox_id)


async def _validate_tuple(session: AsyncSession, claim: Claim) -> None:
    d, s, u = (claim.key[k] for k in JOB.key_columns)
    default = await session.get(Library, d)
    if default is None or not default.is_default or default.owner_user_id != u:
        raise TerminalError(
            "E_BACKFILL_TUPLE_INVALID",
            "default library missing, not a default library, or not owned by the user",
        )
    source = await session.get(Library, s)
    if source is None or source.is_default:
        raise TerminalError(
            "E_BACKFILL_TUPLE_INVALID", "source library missing or is a default library"
        )


async def _lock_membership(session: AsyncSession, source: uuid.UUID, user: uuid.UUID) -> bool:
    """Hold a lock on membership (S, u) that conflicts with its deletion; False if gone."""
    found = await session.scalar(
        select(Membership.user_id)
        .where(Membership.library_id == source, Membership.user_id == user)
        .with_for_update(read=True)
    )
    return found is not None


_MATERIALISE_CHUNK = text(
    """
    WITH chunk AS (
        SELECT media_id FROM library_media
        WHERE library_id = :s AND (CAST(:after AS uuid) IS NULL OR media_id > CAST(:after AS uuid))
        ORDER BY media_id
        LIMIT :n
        -- Conflicts with a concurrent removal of m from S: either it waits for this chunk
        -- (and then deletes the edge written here) or this chunk skips the removed row.
        FOR KEY SHARE
    ),
    edges AS (
        INSERT INTO default_library_closure_edges (default_library_id, media_id, source_library_id)
        SELECT :d, media_id, :s FROM chunk
        ON CONFLICT DO NOTHING
    ),
    rows AS (
        -- DO UPDATE (not NOTHING) locks an existing default row, in media order, so a
        -- concurrent GC waits for this chunk and then sees the edge written here.
        INSERT INTO library_media (library_id, media_id)
        SELECT :d, media_id FROM chunk ORDER BY media_id
        ON CONFLICT (library_id, media_id) DO UPDATE SET created_at = library_media.created_at
    )
    SELECT (SELECT count(*) FROM chunk) AS n,
           (SELECT media_id FROM chunk ORDER BY media_id DESC LIMIT 1) AS last_id
    """
)


async def materialise(
    sessionmaker: async_sessionmaker[AsyncSession], claim: Claim, *, chunk_size: int = CHUNK_SIZE
) -> None:
    """Validate the tuple, then write edges and default rows in chunks.

    Each chunk is its own transaction that re-locks and re-checks the membership and the
    lease, so revocation wins between chunks and a rescued (zombie) attempt writes nothing.
    """
    d, s, u = (claim.key[k] for k in JOB.key_columns)
    async with transaction(sessionmaker) as session:
        await _validate_tuple(session, claim)
    after: uuid.UUID | None = None
    while True:
        async with transaction(sessionmaker) as session:
            if not await _lock_membership(session, s, u):
                return  # membership gone: nothing (more) to write; the job completes
            if not await machine.still_holds(session, JOB, claim):
                raise LeaseLost("backfill lease lost between chunks")
            row = (
                await session.execute(
                    _MATERIALISE_CHUNK,
                    {"d": d, "s": s, "after": str(after) if after else None, "n": chunk_size},
                )
            ).one()
        if row.n < chunk_size:
            return
        after = row.last_id


def finish_event(topics: Topics) -> OnFinish:
    """An `on_finish` hook that announces the job's end on the events topic."""

    async def announce(session: AsyncSession, claim: Claim, status: str) -> None:
        event = DomainEvent(
            event=f"backfill.{status}",
            entity_id=str(claim.key["default_library_id"]),
            data={k: str(v) for k, v in claim.key.items()},
            request_id=claim.request_id,
            correlation_id=claim.correlation_id,
        )
        await outbox.enqueue(session, topics.events, event.key, event)

    return announce


async def get_job(session: AsyncSession, key: BackfillKey) -> dict[str, Any] | None:
    row = (await session.execute(select(_TABLE).where(JOB.where_key(key.as_dict())))).one_or_none()
    return None if row is None else dict(row._mapping)
