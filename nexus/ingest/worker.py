"""One ingest attempt: fetch or read the file, extract, and store fragments atomically.

`make_work` is the staged work of `nexus.jobs.worker.run_job` for the ingest job type: it
marks the media `extracting` in the claim's transaction, does the slow part with no
transaction open (fetching, then CPU-bound extraction in the worker's extraction
processes), and returns a finaliser that writes fragments, title and `ready_for_reading`
in the same transaction as the job's fenced completion. Failures
raise `TerminalError`/`TransientError`; `on_finish` records them on the media row.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.errors import TerminalError
from nexus.ingest import extraction_pool as extractors
from nexus.ingest import service
from nexus.ingest.documents import DocumentResult
from nexus.ingest.extraction_pool import ExtractionPool
from nexus.ingest.fetch import FetchPolicy, fetch_url
from nexus.ingest.storage import LocalStorage, media_key
from nexus.ingest.urls import normalise_url
from nexus.jobs import outbox
from nexus.jobs.machine import Claim, LeaseLost
from nexus.jobs.worker import Finalize, JobError, OnFinish, Staged
from nexus.messaging.messages import DomainEvent
from nexus.messaging.topics import Topics

UPLOAD_CODES = frozenset({"E_STORAGE_MISSING", "E_INVALID_FILE_TYPE"})


@dataclass(frozen=True)
class IngestDeps:
    storage: LocalStorage
    fetch_policy: FetchPolicy
    topics: Topics
    extraction: ExtractionPool


@dataclass(frozen=True)
class Extracted:
    kind: str
    title: str | None
    fragments: Sequence[tuple[int, str, str]]
    final_url: str | None = None
    fetched_pdf: bytes | None = None


async def _start(session: AsyncSession, claim: Claim) -> Any:
    """Mark the media extracting, in the claim's transaction (so fenced by it); None when
    it is already readable (a replay after a crash)."""
    return (
        await session.execute(
            text(
                """
                UPDATE media SET processing_status = 'extracting',
                    processing_started_at = now(), processing_attempts = :a,
                    updated_at = now()
                WHERE id = :m AND processing_status IN ('pending', 'extracting')
                RETURNING id, kind, requested_url, canonical_url,
                    (SELECT storage_path FROM media_file f WHERE f.media_id = media.id)
                        AS storage_path
                """
            ),
            {"m": claim.key["media_id"], "a": claim.attempt},
        )
    ).one_or_none()


async def _from_url(media: Any, deps: IngestDeps) -> Extracted:
    fetched = await fetch_url(media.requested_url, policy=deps.fetch_policy)
    if fetched.kind == "pdf":
        doc = await deps.extraction.run(extractors.pdf, fetched.body)
        return Extracted("pdf", doc.title, doc.fragments, fetched.final_url, fetched.body)
    title, fragments = await deps.extraction.run(
        extractors.article, fetched.text or "", fetched.final_url
    )
    return Extracted("web_article", title, fragments, fetched.final_url)


async def _from_file(media: Any, deps: IngestDeps) -> Extracted:
    if media.storage_path is None:
        raise TerminalError("E_STORAGE_MISSING", "no file was uploaded for this media")
    data = await deps.storage.read_bytes(media.storage_path)
    extractor = extractors.pdf if media.kind == "pdf" else extractors.epub
    doc: DocumentResult = await deps.extraction.run(extractor, data)
    return Extracted(media.kind, doc.title, doc.fragments)


def make_work(deps: IngestDeps) -> Staged[Any]:
    async def ingest_work(
        sm: async_sessionmaker[AsyncSession], claim: Claim, media: Any
    ) -> Finalize | None:
        if media is None:
            return None  # already readable (a replay after a crash): just complete the job
        if media.kind == "web_article" and media.storage_path is None:
            extracted = await _from_url(media, deps)
        else:
            extracted = await _from_file(media, deps)
        if not extracted.fragments:
            raise TerminalError("E_EXTRACTION_EMPTY", "no text could be extracted")
        if extracted.fetched_pdf is not None:
            await deps.storage.put_bytes(media_key(media.id), extracted.fetched_pdf)
        return _finaliser(media, extracted)

    return Staged(_start, ingest_work)


def _finaliser(media: Any, extracted: Extracted) -> Finalize:
    async def finalize(session: AsyncSession) -> None:
        if extracted.final_url is not None and extracted.kind == "web_article":
            canonical = normalise_url(extracted.final_url)
            if canonical != media.canonical_url:
                winner = await session.scalar(
                    text(
                        "SELECT id FROM media WHERE kind = 'web_article' AND canonical_url = :c "
                        "AND id <> :m FOR UPDATE"
                    ),
                    {"c": canonical, "m": media.id},
                )
                if winner is not None:
                    await service.merge_into(session, media.id, winner)
                    return
                await session.execute(
                    text("UPDATE media SET canonical_url = :c WHERE id = :m"),
                    {"c": canonical[:2048], "m": media.id},
                )
        await _store(session, media.id, extracted)

    return finalize


# Fragments (replacing any from an earlier extraction: fresh ids, and rows past the new
# last index removed) and the media row's `ready_for_reading`, in one round trip.
_STORE = text(
    """
    WITH new AS (
        SELECT * FROM unnest(CAST(:idx AS int[]), CAST(:html AS text[]), CAST(:txt AS text[]))
            AS f(idx, html, txt)
    ), written AS (
        INSERT INTO fragments (media_id, idx, html_sanitized, canonical_text)
        SELECT :m, idx, html, txt FROM new
        ON CONFLICT (media_id, idx) DO UPDATE SET id = gen_random_uuid(), created_at = now(),
            html_sanitized = EXCLUDED.html_sanitized, canonical_text = EXCLUDED.canonical_text
    ), extra AS (
        DELETE FROM fragments WHERE media_id = :m AND idx >= cardinality(CAST(:idx AS int[]))
    ), ready AS (
        UPDATE media SET processing_status = 'ready_for_reading', kind = :k,
            title = COALESCE(:t, title),
            canonical_source_url = COALESCE(:u, canonical_source_url),
            processing_completed_at = now(), failure_stage = NULL, last_error_code = NULL,
            last_error_message = NULL, failed_at = NULL, updated_at = now()
        WHERE id = :m AND processing_status = 'extracting'
        RETURNING 1
    )
    SELECT count(*) FROM ready
    """
)


async def _store(session: AsyncSession, media_id: uuid.UUID, extracted: Extracted) -> None:
    if extracted.fetched_pdf is not None:
        await session.execute(
            text(
                "INSERT INTO media_file (media_id, storage_path, content_type, size_bytes) "
                "VALUES (:m, :p, 'application/pdf', :n) ON CONFLICT (media_id) DO NOTHING"
            ),
            {"m": media_id, "p": media_key(media_id), "n": len(extracted.fetched_pdf)},
        )
    ready = await session.scalar(
        _STORE,
        {
            "m": media_id,
            "idx": [f[0] for f in extracted.fragments],
            "html": [f[1] for f in extracted.fragments],
            "txt": [f[2] for f in extracted.fragments],
            "k": extracted.kind,
            "t": extracted.title,
            "u": extracted.final_url,
        },
    )
    if not ready:
        raise LeaseLost("media left 'extracting' before completion")


def on_finish(topics: Topics) -> OnFinish:
    """Mirror the job's outcome on the media row and announce it on the events topic."""

    async def record(
        session: AsyncSession, claim: Claim, outcome: str, error: JobError | None
    ) -> None:
        media_id = claim.key["media_id"]
        if outcome == "retry" and error is not None:
            await session.execute(
                text(
                    "UPDATE media SET processing_status = 'pending', last_error_code = :c, "
                    "last_error_message = :msg, updated_at = now() "
                    "WHERE id = :m AND processing_status IN ('pending', 'extracting')"
                ),
                {"m": media_id, "c": error.code, "msg": error.message[:1000]},
            )
            return
        if outcome == "failed" and error is not None:
            stage = "upload" if error.code in UPLOAD_CODES else "extract"
            await session.execute(
                text(
                    "UPDATE media SET processing_status = 'failed', failure_stage = :s, "
                    "last_error_code = :c, last_error_message = :msg, failed_at = now(), "
                    "updated_at = now() "
                    "WHERE id = :m AND processing_status IN ('pending', 'extracting', 'embedding')"
                ),
                {"m": media_id, "s": stage, "c": error.code, "msg": error.message[:1000]},
            )
        event = DomainEvent(
            event="media.ready" if outcome == "completed" else "media.failed",
            entity_id=str(media_id),
            data={"error_code": error.code} if error else {},
            request_id=claim.request_id,
            correlation_id=claim.correlation_id,
        )
        await outbox.enqueue(session, topics.events, event.key, event)

    return record
