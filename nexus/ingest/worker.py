"""One ingest attempt: fetch or read the file, extract, and store fragments atomically.

`make_work` is the staged work of `nexus.jobs.worker.run_job` for the ingest job type: it
marks the media `extracting` in the claim's transaction, does the slow part with no
transaction open (fetching, then CPU-bound extraction in the worker's extraction
processes), and returns a finaliser that writes fragments, title and `ready_for_reading`
in the same transaction as the job's fenced completion. Failures
raise `TerminalError`/`TransientError`; `on_finish` records them on the media row.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.elements import TextClause

from nexus import tracing
from nexus.errors import TerminalError
from nexus.extraction import pool as extractors
from nexus.extraction.documents import DocumentResult
from nexus.extraction.pool import ExtractionPool
from nexus.fetching.fetch import FetchPolicy, fetch_url
from nexus.fetching.urls import normalise_url
from nexus.ingest import service
from nexus.jobs import outbox
from nexus.jobs.machine import Claim, LeaseLost, Rider
from nexus.jobs.worker import Finalize, JobError, OnFinish, Staged
from nexus.messaging.messages import DomainEvent
from nexus.messaging.topics import Topics
from nexus.uploads.storage import LocalStorage, media_key

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


@dataclass(frozen=True)
class MediaToIngest:
    id: uuid.UUID
    kind: str
    requested_url: str | None
    canonical_url: str | None
    storage_path: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> MediaToIngest:
        return cls(
            uuid.UUID(str(row["id"])),
            row["kind"],
            row["requested_url"],
            row["canonical_url"],
            row["storage_path"],
        )


# Rides in the claim's statement: the media is marked extracting only when the claim took
# the job (fenced by it). No row back when it is already readable (a replay after a crash).
_START = Rider(
    ctes="""
    started AS (
        UPDATE media SET processing_status = 'extracting',
            processing_started_at = now(),
            processing_attempts = (SELECT attempts FROM moved), updated_at = now()
        WHERE id = :k_media_id AND processing_status IN ('pending', 'extracting')
            AND EXISTS (SELECT 1 FROM moved)
        RETURNING id, kind, requested_url, canonical_url,
            (SELECT storage_path FROM media_file f WHERE f.media_id = media.id)
                AS storage_path
    )
    """,
    result="started",
)


async def _from_url(media: MediaToIngest, deps: IngestDeps) -> Extracted:
    if media.requested_url is None:
        raise TerminalError("E_INVALID_URL", "the media has no URL to fetch")
    with tracing.span("fetch"):
        fetched = await fetch_url(media.requested_url, policy=deps.fetch_policy)
    with tracing.span("extract", attributes={"nexus.media.kind": fetched.kind}):
        if fetched.kind == "pdf":
            doc = await deps.extraction.run(extractors.pdf, fetched.body)
            return Extracted("pdf", doc.title, doc.fragments, fetched.final_url, fetched.body)
        title, fragments = await deps.extraction.run(
            extractors.web_page, fetched.body, fetched.charset, fetched.final_url
        )
    return Extracted("web_article", title, fragments, fetched.final_url)


async def _from_file(media: MediaToIngest, deps: IngestDeps) -> Extracted:
    if media.storage_path is None:
        raise TerminalError("E_STORAGE_MISSING", "no file was uploaded for this media")
    data = await deps.storage.read_bytes(media.storage_path)
    extractor = extractors.pdf if media.kind == "pdf" else extractors.epub
    with tracing.span("extract", attributes={"nexus.media.kind": media.kind}):
        doc: DocumentResult = await deps.extraction.run(extractor, data)
    return Extracted(media.kind, doc.title, doc.fragments)


def make_work(deps: IngestDeps) -> Staged:
    async def ingest_work(
        sm: async_sessionmaker[AsyncSession], claim: Claim, started: dict[str, Any] | None
    ) -> Finalize | Rider | None:
        if started is None:
            # Not waiting for ingestion (readable already: a replay after a crash; or
            # failed/deleted meanwhile): complete the job, write and announce nothing.
            return _NOTHING
        media = MediaToIngest.from_row(started)
        if media.kind == "web_article" and media.storage_path is None:
            extracted = await _from_url(media, deps)
        else:
            extracted = await _from_file(media, deps)
        if not extracted.fragments:
            raise TerminalError("E_EXTRACTION_EMPTY", "no text could be extracted")
        if extracted.fetched_pdf is not None:
            await deps.storage.put_bytes(media_key(media.id), extracted.fetched_pdf)
        if extracted.final_url is not None and extracted.kind == "web_article":
            canonical = normalise_url(extracted.final_url)
            if canonical != media.canonical_url:
                return _merging_finaliser(media, extracted, canonical)
        return _store_rider(media, extracted, claim, deps.topics)

    return Staged(_START, ingest_work)


def _merging_finaliser(media: MediaToIngest, extracted: Extracted, canonical: str) -> Finalize:
    """The page answered under another canonical URL: merge into an article already saved
    under it (SPEC §8), or take that URL and store. Runs in the completion's transaction;
    `on_finish` announces the outcome."""

    async def finalize(session: AsyncSession) -> None:
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
# last index removed) and the media row's `ready_for_reading`, all guarded by `ready` (the
# media still extracting, and the job's completion matched).
_READY_CTES = """
    new AS (
        SELECT * FROM unnest(CAST(:r_idx AS int[]), CAST(:r_html AS text[]),
                             CAST(:r_txt AS text[])) AS f(idx, html, txt)
    ), ready AS (
        UPDATE media SET processing_status = 'ready_for_reading', kind = :r_kind,
            title = COALESCE(:r_title, title),
            canonical_source_url = COALESCE(:r_url, canonical_source_url),
            processing_completed_at = now(), failure_stage = NULL, last_error_code = NULL,
            last_error_message = NULL, failed_at = NULL, updated_at = now()
        WHERE id = :k_media_id AND processing_status = 'extracting'
            AND EXISTS (SELECT 1 FROM moved)
        RETURNING id
    ), written AS (
        INSERT INTO fragments (media_id, idx, html_sanitized, canonical_text)
        SELECT :k_media_id, idx, html, txt FROM new WHERE EXISTS (SELECT 1 FROM ready)
        ON CONFLICT (media_id, idx) DO UPDATE SET id = gen_random_uuid(), created_at = now(),
            html_sanitized = EXCLUDED.html_sanitized, canonical_text = EXCLUDED.canonical_text
    ), extra AS (
        DELETE FROM fragments WHERE media_id = :k_media_id
            AND idx >= cardinality(CAST(:r_idx AS int[])) AND EXISTS (SELECT 1 FROM ready)
    )
"""
_FILE_CTE = """
    , file AS (
        INSERT INTO media_file (media_id, storage_path, content_type, size_bytes)
        SELECT :k_media_id, :r_path, 'application/pdf', :r_size
        WHERE EXISTS (SELECT 1 FROM ready)
        ON CONFLICT (media_id) DO NOTHING
    )
"""


_EVENT_CTE = outbox.insert_cte("event", when="EXISTS (SELECT 1 FROM ready)")
_STILL_EXTRACTING = (
    "EXISTS (SELECT 1 FROM media WHERE id = :k_media_id AND processing_status = 'extracting')"
)
_NOTHING = Rider(ctes="nothing AS (SELECT 1 AS done)", result="nothing")


def _fragment_params(media_id: uuid.UUID, extracted: Extracted) -> dict[str, Any]:
    params: dict[str, Any] = {
        "r_idx": [f[0] for f in extracted.fragments],
        "r_html": [f[1] for f in extracted.fragments],
        "r_txt": [f[2] for f in extracted.fragments],
        "r_kind": extracted.kind,
        "r_title": extracted.title,
        "r_url": extracted.final_url,
    }
    if extracted.fetched_pdf is not None:
        params.update(r_path=media_key(media_id), r_size=len(extracted.fetched_pdf))
    return params


def _store_rider(media: MediaToIngest, extracted: Extracted, claim: Claim, topics: Topics) -> Rider:
    """Everything a successful attempt writes, riding in the job's completion statement:
    fragments, the file row of a fetched PDF, `ready_for_reading` and the `media.ready`
    outbox row."""
    event = _event(claim, "completed", None)
    event_params = outbox.insert_params("event", topics.events, event.key, event)
    ctes = _READY_CTES + (_FILE_CTE if extracted.fetched_pdf is not None else "")
    return Rider(
        ctes=f"{ctes}, {_EVENT_CTE}",
        result="ready",
        params={**_fragment_params(media.id, extracted), **event_params},
        # The job completes only with its media still extracting (else LeaseLost: the
        # lease runs out and a later attempt finds nothing to do), never without the
        # writes above.
        guard=_STILL_EXTRACTING,
    )


@functools.cache
def _store_sql(with_file: bool) -> TextClause:
    """The same writes as one statement of the caller's transaction (the merge path, where
    the job's completion already ran in that transaction: `moved` is a stand-in)."""
    return text(
        "WITH moved AS (SELECT 1), "
        + _READY_CTES
        + (_FILE_CTE if with_file else "")
        + " SELECT count(*) FROM ready"
    )


async def _store(session: AsyncSession, media_id: uuid.UUID, extracted: Extracted) -> None:
    params = {"k_media_id": media_id, **_fragment_params(media_id, extracted)}
    if not await session.scalar(_store_sql(extracted.fetched_pdf is not None), params):
        raise LeaseLost("media left 'extracting' before completion")


def _event(claim: Claim, outcome: str, error: JobError | None) -> DomainEvent:
    return DomainEvent(
        event="media.ready" if outcome == "completed" else "media.failed",
        entity_id=str(claim.key["media_id"]),
        data={"error_code": error.code} if error else {},
        request_id=claim.request_id,
        correlation_id=claim.correlation_id,
    )


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
        event = _event(claim, outcome, error)
        await outbox.enqueue(session, topics.events, event.key, event)

    return record
