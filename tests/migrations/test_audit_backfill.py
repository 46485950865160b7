"""Migration 0013 chains the ledgers' existing rows: `audit verify` passes after upgrade,
and storage usage is charged for existing uploads."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest_asyncio
from sqlalchemy.ext.asyncio import create_async_engine

from nexus.audit.chain import verify
from nexus.db.migrate import migrate_async
from tests.support.services import (
    asyncpg_dsn,
    create_database,
    drop_database,
    sqlalchemy_url,
    unique_name,
)

BEFORE_0013 = "0015"


@pytest_asyncio.fixture
async def old_db() -> AsyncIterator[str]:
    name = unique_name("nexus_mig")
    await create_database(name)
    try:
        await migrate_async(sqlalchemy_url(name), "upgrade", BEFORE_0013)
        yield name
    finally:
        await drop_database(name)


async def test_existing_rows_are_chained_by_the_upgrade(old_db: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(old_db))
    try:
        await conn.execute(
            """
            INSERT INTO operator_actions (actor, action, target, outcome, details, at)
            SELECT 'ann', 'requeue', jsonb_build_object('n', g), 'ok',
                   CASE WHEN g % 2 = 0 THEN '{"reason": "x"}'::jsonb END,
                   now() - make_interval(mins => 10 - g)
            FROM generate_series(1, 5) g;
            INSERT INTO job_events (job_type, job_key, from_status, to_status, attempt, actor)
            SELECT 'ingest', jsonb_build_object('media_id', k::text), s.f, s.t, 1, 'w'
            FROM generate_series(1, 3) k,
                 (VALUES (NULL, 'pending'), ('pending', 'running'), ('running', 'completed'))
                     AS s(f, t);
            INSERT INTO users (id) VALUES ('00000000-0000-0000-0000-000000000001');
            INSERT INTO media (id, kind, created_by_user_id, file_sha256) VALUES
                ('00000000-0000-0000-0000-00000000000a', 'pdf',
                 '00000000-0000-0000-0000-000000000001', 'abc');
            INSERT INTO media_file (media_id, storage_path, content_type, size_bytes) VALUES
                ('00000000-0000-0000-0000-00000000000a', 'media/a/original',
                 'application/pdf', 1234);
            INSERT INTO media_uploads (media_id, nonce, filename, uploaded_at) VALUES
                ('00000000-0000-0000-0000-00000000000a', 'n', 'a.pdf', now());
            """
        )
    finally:
        await conn.close()

    await migrate_async(sqlalchemy_url(old_db))

    engine = create_async_engine(sqlalchemy_url(old_db))
    try:
        async with engine.connect() as sa_conn:
            report = await verify(sa_conn)
    finally:
        await engine.dispose()
    assert report.problems == []
    assert report.rows == {"operator_actions": 5, "job_events": 9}
    assert report.chains == {"operator_actions": 1, "job_events": 3}
    conn = await asyncpg.connect(asyncpg_dsn(old_db))
    try:
        assert await conn.fetchval("SELECT bytes FROM storage_usage") == 1234
        assert await conn.fetchval("SELECT verified_at IS NOT NULL FROM media_uploads")
    finally:
        await conn.close()
