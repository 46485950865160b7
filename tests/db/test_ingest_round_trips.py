"""The ingest hot path costs two database statements per page: the claim (with the media's
START transition riding in it) and the completion (with READY, the fragments and the
outbox row riding in it). A regression that adds a round trip fails here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from nexus.config import Settings
from nexus.db.tx import transaction
from nexus.extraction.pool import ExtractionPool
from nexus.fetching.fetch import FetchPolicy
from nexus.ingest import jobs, service, worker
from nexus.jobs.worker import JobPolicy, Outcome, run_job
from nexus.messaging.topics import Topics
from nexus.uploads.storage import LocalStorage
from tests.fetch.server import LocalServer, respond, serving
from tests.support import factories as f

PAGE = (
    b"<html><head><title>Round trips</title></head><body><article>"
    + b"<p>A paragraph long enough to be kept as the article's text, twice over.</p>" * 8
    + b"</article></body></html>"
)


@pytest_asyncio.fixture
async def page_server() -> AsyncIterator[LocalServer]:
    async with serving({"/a": respond(200, PAGE, "text/html; charset=utf-8")}) as server:
        yield server


@pytest_asyncio.fixture
async def extraction() -> AsyncIterator[ExtractionPool]:
    pool = ExtractionPool(processes=1, timeout_seconds=10.0)
    await pool.warm_up()
    try:
        yield pool
    finally:
        pool.close()


async def test_an_ingested_page_costs_two_statements(
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    tmp_path: Path,
    page_server: LocalServer,
    extraction: ExtractionPool,
) -> None:
    topics = Topics.from_settings(settings)
    allowed = (page_server.host,)
    async with transaction(sessionmaker) as s:
        user, default = await f.account(s)
        created = await service.create_from_url(
            s,
            user,
            default,
            page_server.url("/a"),
            topics,
            allow_hosts=allowed,
            request_id="r",
            correlation_id="c",
        )
    deps = worker.IngestDeps(
        storage=LocalStorage(tmp_path),
        fetch_policy=FetchPolicy(allow_hosts=allowed),
        topics=topics,
        extraction=extraction,
    )
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        outcome = await run_job(
            sessionmaker,
            jobs.JOB,
            {"media_id": created.media_id},
            worker.make_work(deps),
            JobPolicy(owner="w", lease_seconds=30, delays=(1.0,)),
            on_finish=worker.on_finish(topics),
        )
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)

    assert outcome is Outcome.COMPLETED
    assert len(statements) == 2, statements
    async with sessionmaker() as s:
        status = await s.scalar(
            text("SELECT processing_status FROM media WHERE id = :media_id"),
            {"media_id": created.media_id},
        )
        fragments = await s.scalar(
            text("SELECT count(*) FROM fragments WHERE media_id = :media_id"),
            {"media_id": created.media_id},
        )
    assert (status, fragments > 0) == ("ready_for_reading", True)
