"""The media row mirrors a failed ingest attempt through guarded transitions: a miss is a
declared no-op (the media is readable already) or an error, never silence."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.config import Settings
from nexus.db.transitions import TransitionMissed
from nexus.ingest import worker
from nexus.jobs.machine import Claim
from nexus.jobs.worker import JobError
from nexus.media import transitions as media
from nexus.messaging.topics import Topics
from tests.support import factories as f


async def _media(session: AsyncSession, status: str) -> uuid.UUID:
    (media_id,) = await f.media(session)
    await session.execute(
        text("UPDATE media SET processing_status = :status WHERE id = :media_id"),
        {"status": status, "media_id": media_id},
    )
    return media_id


async def _finish(
    session: AsyncSession, settings: Settings, media_id: uuid.UUID, outcome: str
) -> None:
    claim = Claim({"media_id": media_id}, uuid.uuid4(), 1, "r", "c")
    error = JobError("E_FETCH_FAILED", "boom", terminal=outcome == "failed")
    await worker.on_finish(Topics.from_settings(settings))(session, claim, outcome, error)


async def _row(session: AsyncSession, media_id: uuid.UUID) -> tuple[str, str | None, int]:
    row = (
        await session.execute(
            text(
                "SELECT processing_status, last_error_code, "
                "(SELECT count(*) FROM outbox) AS announced FROM media WHERE id = :media_id"
            ),
            {"media_id": media_id},
        )
    ).one()
    return str(row.processing_status), row.last_error_code, int(row.announced)


@pytest.mark.parametrize("outcome", ["retry", "failed"])
async def test_a_failed_attempt_of_a_readable_media_changes_and_announces_nothing(
    session: AsyncSession, settings: Settings, outcome: str
) -> None:
    media_id = await _media(session, "ready_for_reading")
    await _finish(session, settings, media_id, outcome)
    assert await _row(session, media_id) == ("ready_for_reading", None, 0)


@pytest.mark.parametrize(("outcome", "status"), [("retry", "pending"), ("failed", "failed")])
async def test_a_failed_attempt_of_an_extracting_media_is_mirrored(
    session: AsyncSession, settings: Settings, outcome: str, status: str
) -> None:
    media_id = await _media(session, "extracting")
    await _finish(session, settings, media_id, outcome)
    announced = 1 if outcome == "failed" else 0
    assert await _row(session, media_id) == (status, "E_FETCH_FAILED", announced)


async def test_a_retry_of_a_media_in_no_waiting_state_is_an_error(
    session: AsyncSession, settings: Settings
) -> None:
    media_id = await _media(session, "failed")
    with pytest.raises(TransitionMissed, match="in state 'failed'"):
        await _finish(session, settings, media_id, "retry")


async def test_rejecting_an_upload_that_is_not_pending_is_an_error(session: AsyncSession) -> None:
    media_id = await _media(session, "extracting")
    with pytest.raises(TransitionMissed, match="in state 'extracting'"):
        await media.reject_upload(session, media_id, code="E_INVALID_FILE_TYPE", message="x")
