"""Ingestion requests: save a web article by URL (SPEC §8), retry a failed media.

Runs in the caller's transaction: the media row, the caller's intrinsic link, the ingest
job and its outbox message are one unit.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.errors import DependencyUnavailable
from nexus.fetching.urls import normalise_url, validate_url
from nexus.ingest import jobs
from nexus.jobs import machine, outbox
from nexus.jobs.states import JobStatus
from nexus.media.states import ProcessingStatus
from nexus.messaging.messages import IngestRequested
from nexus.messaging.topics import Topics
from nexus.metrics import note_transition
from nexus.sharing import closure

_CREATED = "EXISTS (SELECT 1 FROM created)"
_LINK = closure.default_link_ctes(
    library="CAST(:default_library_id AS uuid)", media="CAST(:media_id AS uuid)", when=_CREATED
)
_CREATE = text(
    f"""
    WITH created AS (
        INSERT INTO media (id, kind, requested_url, canonical_url, canonical_source_url,
                           created_by_user_id)
        VALUES (:media_id, 'web_article', :url, :canonical, :canonical, :viewer)
        ON CONFLICT (kind, canonical_url) WHERE canonical_url IS NOT NULL DO NOTHING
        RETURNING id
    ),
    {_LINK},
    {machine.create_ctes(jobs.JOB, (), when=_CREATED)},
    {outbox.insert_cte("msg", when=_CREATED)}
    SELECT (SELECT id FROM created) AS created, (SELECT id FROM msg) AS outbox_id
    """
)


@dataclass(frozen=True)
class FromUrlResult:
    media_id: uuid.UUID
    duplicate: bool
    processing_status: str

    @property
    def status_code(self) -> int:
        return 200 if self.duplicate else 202


async def _existing_article(session: AsyncSession, canonical: str) -> tuple[uuid.UUID, str] | None:
    row = (
        await session.execute(
            text(
                "SELECT id, processing_status FROM media "
                "WHERE kind = 'web_article' AND canonical_url = :canonical"
            ),
            {"canonical": canonical},
        )
    ).one_or_none()
    return (row.id, str(row.processing_status)) if row is not None else None


async def create_from_url(
    session: AsyncSession,
    viewer: uuid.UUID,
    default_library_id: uuid.UUID,
    raw_url: str,
    topics: Topics,
    *,
    allow_hosts: Iterable[str] = (),
    request_id: str | None,
    correlation_id: str | None,
) -> FromUrlResult:
    """400 E_INVALID_URL for a URL we will never fetch. A web article with the same
    canonical URL is attached to the caller's default library (200, duplicate); otherwise
    a pending media + ingest job + outbox message are created (202). Two concurrent
    requests for one URL end with one media (the partial unique index decides). An
    article that vanishes between the insert and the look-up (merged meanwhile) is tried
    again; 503 E_DEPENDENCY_UNAVAILABLE (Retry-After 1) if it keeps happening."""
    url = validate_url(raw_url, allow_hosts=allow_hosts)
    canonical = normalise_url(url)
    for _attempt in range(_RACE_ATTEMPTS):
        created = await _create_or_find(
            session,
            viewer,
            default_library_id,
            url,
            canonical,
            topics,
            request_id=request_id,
            correlation_id=correlation_id,
        )
        if created is not None:
            return created
    raise DependencyUnavailable(
        "the article for this URL kept changing during the request; retry it", retry_after=1
    )


# The insert conflicts with an article that is deleted (merged) before the look-up sees
# it: READ COMMITTED gives each statement a fresh snapshot, so trying again in the same
# transaction inserts (the article is gone) or finds the one that replaced it.
_RACE_ATTEMPTS = 3


async def _create_or_find(
    session: AsyncSession,
    viewer: uuid.UUID,
    default_library_id: uuid.UUID,
    url: str,
    canonical: str,
    topics: Topics,
    *,
    request_id: str | None,
    correlation_id: str | None,
) -> FromUrlResult | None:
    """The article created, or the existing one attached; None when the existing one
    vanished between the two statements (the race above)."""
    # The common case (a new URL) is one statement: media, the caller's intrinsic link, the
    # pending job with its ledger row and the job's outbox message, each guarded by the
    # media insert (a known URL conflicts and writes nothing; handled below). The id is
    # chosen here so the message can be written in the same statement.
    media_id = uuid.uuid4()
    msg = IngestRequested(
        media_id=media_id, attempt=0, request_id=request_id, correlation_id=correlation_id
    )
    value = msg.model_dump_json()
    row = (
        await session.execute(
            _CREATE,
            {
                "media_id": media_id,
                "url": url[:2048],
                "canonical": canonical[:2048],
                "viewer": viewer,
                "default_library_id": default_library_id,
                **machine.create_params(
                    jobs.JOB,
                    {"media_id": media_id},
                    actor=f"user:{viewer}",
                    request_id=request_id,
                    correlation_id=correlation_id,
                    insert_values={},
                ),
                **outbox.insert_params("msg", topics.ingest, msg.key, msg, value),
            },
        )
    ).one()
    if row.created is not None:
        outbox.remember(session, row.outbox_id, topics.ingest, msg.key, msg, value)
        note_transition(session, jobs.JOB.name, None, JobStatus.PENDING)
        return FromUrlResult(media_id, False, ProcessingStatus.PENDING.value)
    existing = await _existing_article(session, canonical)
    if existing is None:
        return None
    existing_id, status = existing
    await closure.add_to_default(session, default_library_id, existing_id)
    return FromUrlResult(existing_id, True, status)


async def merge_into(session: AsyncSession, loser: uuid.UUID, winner: uuid.UUID) -> None:
    """SPEC §8 canonical dedupe: the loser's library links move to the winner (default
    libraries keep their intrinsics), older merges into the loser are re-pointed, a
    `media_merges` row remembers the loser, and the loser is deleted."""
    links = await session.execute(
        text(
            """
            SELECT lm.library_id, l.is_default,
                   EXISTS (SELECT 1 FROM default_library_intrinsics i
                           WHERE i.default_library_id = lm.library_id AND i.media_id = :loser)
                       AS intrinsic
            FROM library_media lm JOIN libraries l ON l.id = lm.library_id
            WHERE lm.media_id = :loser
            ORDER BY lm.library_id
            """
        ),
        {"loser": loser},
    )
    for library_id, is_default, intrinsic in links.all():
        if not is_default:
            await closure.add_to_shared(session, library_id, winner)
        elif intrinsic:
            await closure.add_to_default(session, library_id, winner)
        # A default row justified only by edges follows its shared library (above).
    await session.execute(
        text("UPDATE media_merges SET into_media_id = :winner WHERE into_media_id = :loser"),
        {"winner": winner, "loser": loser},
    )
    await session.execute(
        text(
            "INSERT INTO media_merges (from_media_id, into_media_id) VALUES (:loser, :winner) "
            "ON CONFLICT (from_media_id) DO UPDATE SET into_media_id = EXCLUDED.into_media_id"
        ),
        {"loser": loser, "winner": winner},
    )
    await session.execute(text("DELETE FROM media WHERE id = :loser"), {"loser": loser})
