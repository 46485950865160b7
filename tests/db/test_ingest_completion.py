"""The ingest attempt's single-statement start and completion on the real database, on
the paths that need no fetch or extraction (the media is no longer waiting)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.config import Settings
from nexus.db.tx import transaction
from nexus.fetching.fetch import FetchPolicy
from nexus.ingest import jobs, service, worker
from nexus.jobs import machine
from nexus.jobs.machine import LeaseLost
from nexus.jobs.worker import JobPolicy, Outcome, run_job
from nexus.messaging.topics import Topics
from nexus.uploads.storage import LocalStorage
from tests.support import factories as f


async def _saved(sm: async_sessionmaker[AsyncSession], topics: Topics) -> uuid.UUID:
    async with transaction(sm) as s:
        user, default = await f.account(s)
        created = await service.create_from_url(
            s, user, default, "https://example.com/a", topics, request_id="r", correlation_id="c"
        )
    return created.media_id


async def _one(sm: async_sessionmaker[AsyncSession], sql: str, **params: Any) -> Any:
    async with sm() as s:
        return (await s.execute(text(sql), params)).one()


async def test_a_job_whose_media_is_no_longer_waiting_completes_and_announces_nothing(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, tmp_path: Path
) -> None:
    topics = Topics.from_settings(settings)
    media_id = await _saved(sessionmaker, topics)
    # Failed by another path while its job still waited (pending).
    async with transaction(sessionmaker) as s:
        await s.execute(
            text(
                "UPDATE media SET processing_status = 'failed', failure_stage = 'other', "
                "last_error_code = 'E_X', last_error_message = 'x', failed_at = now() "
                "WHERE id = :m"
            ),
            {"m": media_id},
        )
    deps = worker.IngestDeps(
        storage=LocalStorage(tmp_path),
        fetch_policy=FetchPolicy(),
        topics=topics,
        extraction=None,  # type: ignore[arg-type]  # never reached on this path
    )
    outcome = await run_job(
        sessionmaker,
        jobs.JOB,
        {"media_id": media_id},
        worker.make_work(deps),
        JobPolicy(owner="w", lease_seconds=30, delays=(1.0,)),
        on_finish=worker.on_finish(topics),
    )
    assert outcome is Outcome.COMPLETED
    media = await _one(
        sessionmaker,
        "SELECT processing_status, processing_attempts FROM media WHERE id = :m",
        m=media_id,
    )
    assert (media.processing_status, media.processing_attempts) == ("failed", 0)  # untouched
    job = await _one(
        sessionmaker, "SELECT status, attempts FROM ingest_jobs WHERE media_id = :m", m=media_id
    )
    assert (job.status, job.attempts) == ("completed", 1)
    events = await _one(
        sessionmaker,
        "SELECT count(*) AS n FROM outbox WHERE topic = :t AND payload->>'entity_id' = :m",
        t=topics.events,
        m=str(media_id),
    )
    assert events.n == 0  # no media.ready for a media that is not ready


async def test_the_completion_misses_when_the_media_left_extracting(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    topics = Topics.from_settings(settings)
    media_id = await _saved(sessionmaker, topics)
    key = {"media_id": media_id}
    async with sessionmaker() as s, s.begin():
        claimed = await machine.claim_with(
            s,
            jobs.JOB,
            key,
            owner="w",
            lease_seconds=30,
            rider=worker.make_work(None).start,  # type: ignore[arg-type]
        )
    assert claimed is not None
    claim, started = claimed
    assert started is not None and uuid.UUID(str(started["id"])) == media_id
    media = worker.MediaToIngest.from_row(started)
    extracted = worker.Extracted(
        "web_article", "T", [(0, "<p>x</p>", "x")], "https://example.com/a"
    )
    async with transaction(sessionmaker) as s:  # moved on by someone else meanwhile
        await s.execute(
            text("UPDATE media SET processing_status = 'pending' WHERE id = :m"), {"m": media_id}
        )
    rider = worker._store_rider(media, extracted, claim, topics)
    with pytest.raises(LeaseLost):
        async with sessionmaker() as s, s.begin():
            await machine.complete(s, jobs.JOB, claim, actor="w", rider=rider)
    job = await _one(sessionmaker, "SELECT status FROM ingest_jobs WHERE media_id = :m", m=media_id)
    assert job.status == "running"  # not finished without its writes
    frags = await _one(
        sessionmaker, "SELECT count(*) AS n FROM fragments WHERE media_id = :m", m=media_id
    )
    assert frags.n == 0
    # With the media extracting again, the same completion goes through and writes it all.
    async with transaction(sessionmaker) as s:
        await s.execute(
            text("UPDATE media SET processing_status = 'extracting' WHERE id = :m"), {"m": media_id}
        )
    async with sessionmaker() as s, s.begin():
        ready = await machine.complete(s, jobs.JOB, claim, actor="w", rider=rider)
    assert ready is not None
    media_row = await _one(
        sessionmaker, "SELECT processing_status, title FROM media WHERE id = :m", m=media_id
    )
    assert (media_row.processing_status, media_row.title) == ("ready_for_reading", "T")
    events = await _one(
        sessionmaker,
        "SELECT array_agg(payload->>'event') AS e FROM outbox WHERE payload->>'entity_id' = :m",
        m=str(media_id),
    )
    assert events.e == ["media.ready"]
