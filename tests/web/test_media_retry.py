"""POST /media/{id}/retry and POST /internal/media/{id}/retry (SPEC §4, §8)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.sharing import closure
from nexus.uploads.storage import media_key
from tests.support.db import one, rows
from tests.support.library_api import User, execute, insert_media, new_user, scalar
from tests.support.webapp import Api, FakePublisher

Sm = async_sessionmaker[AsyncSession]


async def failed_media(
    sm: Sm,
    creator: User,
    *,
    stage: str = "extract",
    code: str = "E_FETCH_FAILED",
    kind: str = "web_article",
    file: bool = False,
) -> uuid.UUID:
    """A failed media created by `creator` (intrinsic in their library) with a failed job."""
    m = await insert_media(
        sm, kind=kind, status="failed", file=file, intrinsic_for=creator.default_library_id
    )
    await execute(
        sm,
        "UPDATE media SET created_by_user_id = :u, failure_stage = CAST(:s AS failure_stage), "
        "last_error_code = :c, last_error_message = 'boom', failed_at = now() WHERE id = :m",
        u=creator.id,
        s=stage,
        c=code,
        m=m,
    )
    await execute(
        sm,
        "INSERT INTO ingest_jobs (media_id, status, attempts, last_error_code, "
        "last_error_message, finished_at) VALUES (:m, 'failed', 4, :c, 'boom', now())",
        m=m,
        c=code,
    )
    return m


MEDIA_ROW = (
    "SELECT processing_status, failure_stage, last_error_code, last_error_message, failed_at "
    "FROM media WHERE id = :m"
)
JOB_ROW = (
    "SELECT status, attempts, last_error_code, finished_at, request_id "
    "FROM ingest_jobs WHERE media_id = :m"
)


async def ingest_outbox(sm: Sm, m: uuid.UUID) -> list[Any]:
    sent = await rows(
        sm,
        "SELECT topic, payload FROM outbox WHERE payload->>'media_id' = :m ORDER BY id",
        m=str(m),
    )
    return [r for r in sent if r.topic.endswith("ingest")]


async def test_creator_retries_a_failed_media(
    alice: User, sessionmaker: Sm, publisher: FakePublisher
) -> None:
    m = await failed_media(sessionmaker, alice)
    r = await alice.post(f"/media/{m}/retry", headers={"X-Request-ID": "retry-1"})
    assert r.status == 202, r.json
    assert r.data == {"media_id": str(m), "processing_status": "pending"}
    row = await one(sessionmaker, MEDIA_ROW, m=m)
    assert (row.processing_status, row.failure_stage, row.last_error_code) == (
        "pending",
        None,
        None,
    )
    assert row.last_error_message is None and row.failed_at is None
    job = await one(sessionmaker, JOB_ROW, m=m)
    assert (job.status, job.attempts, job.last_error_code, job.finished_at) == (
        "pending",
        0,
        None,
        None,
    )
    assert job.request_id == "retry-1"
    assert len(await ingest_outbox(sessionmaker, m)) == 1
    sent = [json.loads(v) for t, _, v, _ in publisher.sent if t.endswith("ingest")]
    assert [s["media_id"] for s in sent] == [str(m)]
    # The media page shows it pending again.
    assert (await alice.get(f"/media/{m}")).data["processing_status"] == "pending"


async def test_not_failed_is_not_retryable(alice: User, sessionmaker: Sm) -> None:
    for status in ("pending", "extracting", "ready_for_reading"):
        m = await insert_media(sessionmaker, status=status, intrinsic_for=alice.default_library_id)
        await execute(sessionmaker, "UPDATE media SET created_by_user_id = :u WHERE id = :m",
                      u=alice.id, m=m)  # fmt: skip
        r = await alice.post(f"/media/{m}/retry")
        assert r.outcome == (409, "E_MEDIA_NOT_RETRYABLE"), status
        assert await ingest_outbox(sessionmaker, m) == []


async def test_a_second_retry_is_409_and_enqueues_once(alice: User, sessionmaker: Sm) -> None:
    m = await failed_media(sessionmaker, alice)
    first, second = await asyncio.gather(
        alice.post(f"/media/{m}/retry"), alice.post(f"/media/{m}/retry")
    )
    assert sorted([first.status, second.status]) == [202, 409]
    assert len(await ingest_outbox(sessionmaker, m)) == 1


async def test_permissions(alice: User, bob: User, carol: User, api: Api, sessionmaker: Sm) -> None:
    """Creator or admin of a containing library; a reader gets 403, a stranger 404."""
    shared = await alice.create_library("Shared")
    await bob.join(alice, shared, role="member")
    m = await failed_media(sessionmaker, carol)
    async with sessionmaker() as s, s.begin():
        await closure.add_to_shared(s, shared, m)
    dave = await new_user(api)

    r = await bob.post(f"/media/{m}/retry")  # reads it through the shared library
    assert r.outcome == (403, "E_FORBIDDEN")
    assert (await dave.post(f"/media/{m}/retry")).outcome == (404, "E_MEDIA_NOT_FOUND")
    assert (await alice.post(f"/media/{uuid.uuid4()}/retry")).outcome == (404, "E_MEDIA_NOT_FOUND")
    assert (await one(sessionmaker, MEDIA_ROW, m=m)).processing_status == "failed"

    r = await alice.post(f"/media/{m}/retry")  # admin (owner) of the shared library
    assert r.status == 202, r.json

    # The creator may retry too (a fresh failure).
    m2 = await failed_media(sessionmaker, carol)
    assert (await carol.post(f"/media/{m2}/retry")).status == 202
    # A promoted admin may.
    m3 = await failed_media(sessionmaker, carol)
    async with sessionmaker() as s, s.begin():
        await closure.add_to_shared(s, shared, m3)
    await execute(
        sessionmaker,
        "UPDATE memberships SET role = 'admin' WHERE library_id = :l AND user_id = :u",
        l=shared,
        u=bob.id,
    )
    assert (await bob.post(f"/media/{m3}/retry")).status == 202


async def test_upload_stage_needs_the_file(
    alice: User, sessionmaker: Sm, storage_dir: Path
) -> None:
    m = await failed_media(
        sessionmaker, alice, stage="upload", code="E_STORAGE_MISSING", kind="pdf"
    )
    assert (await alice.post(f"/media/{m}/retry")).outcome == (400, "E_STORAGE_MISSING")
    assert (await one(sessionmaker, MEDIA_ROW, m=m)).processing_status == "failed"
    assert await ingest_outbox(sessionmaker, m) == []
    # A media_file row whose file is not in storage is still missing.
    await execute(
        sessionmaker,
        "INSERT INTO media_file (media_id, storage_path, content_type, size_bytes) "
        "VALUES (:m, :p, 'application/pdf', 5)",
        m=m,
        p=media_key(m),
    )
    assert (await alice.post(f"/media/{m}/retry")).outcome == (400, "E_STORAGE_MISSING")
    path = storage_dir / media_key(m)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"%PDF-")
    r = await alice.post(f"/media/{m}/retry")
    assert r.status == 202, r.json
    assert (await one(sessionmaker, MEDIA_ROW, m=m)).processing_status == "pending"


async def test_operator_retry(
    alice: User, api: Api, sessionmaker: Sm, tokens: dict[str, str]
) -> None:
    m = await failed_media(sessionmaker, alice)
    viewer, operator = tokens["viewer"], tokens["operator"]

    r = await api.post(f"/internal/media/{m}/retry")
    assert r.status_code == 401
    r = await api.post(f"/internal/media/{m}/retry", token=viewer)
    assert r.status_code == 403 and (await r.get_json())["error"]["code"] == "E_FORBIDDEN"
    r = await api.post(f"/internal/media/{m}/retry", token=operator, internal=None)
    assert r.status_code == 403  # the internal header still applies
    r = await api.post(f"/internal/media/{m}/retry", token=operator)
    assert r.status_code == 202, await r.get_json()
    data = (await r.get_json())["data"]
    assert data == {"media_id": str(m), "processing_status": "pending", "enqueue_dispatched": True}
    job = await one(sessionmaker, JOB_ROW, m=m)
    assert (job.status, job.attempts) == ("pending", 0)
    assert len(await ingest_outbox(sessionmaker, m)) == 1

    r = await api.post(f"/internal/media/{m}/retry", token=operator)
    assert r.status_code == 409
    missing = uuid.uuid4()
    r = await api.post(f"/internal/media/{missing}/retry", token=operator)
    assert r.status_code == 404
    assert (await r.get_json())["error"]["code"] == "E_MEDIA_NOT_FOUND"

    actions = await rows(
        sessionmaker,
        "SELECT action, target->>'media_id' AS media_id, outcome, actor "
        "FROM operator_actions ORDER BY id",
    )
    assert [(a.action, a.media_id, a.outcome) for a in actions] == [
        # The refused requests are audited too (issue #11.8).
        ("auth.failed", None, "E_UNAUTHENTICATED"),
        ("auth.denied", None, "E_FORBIDDEN"),
        ("media.retry", str(m), "requeued"),
        ("media.retry", str(m), "E_MEDIA_NOT_RETRYABLE"),
        ("media.retry", str(missing), "E_MEDIA_NOT_FOUND"),
    ]
    assert (
        await scalar(
            sessionmaker,
            "SELECT count(*) FROM job_events WHERE job_type = 'ingest' AND to_status = 'pending' "
            "AND job_key->>'media_id' = :m",
            m=str(m),
        )
        == 1
    )
