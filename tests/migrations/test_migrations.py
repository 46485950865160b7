"""Migrations: upgrade from empty, downgrade to base, re-upgrade, no drift from the models."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest_asyncio
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from nexus.db.migrate import migrate_async
from nexus.db.registry import load_all_models
from tests.support.services import (
    asyncpg_dsn,
    create_database,
    drop_database,
    sqlalchemy_url,
    unique_name,
)

# SPEC §3 tables (plus the shared rate-limit state).
SPEC_TABLES = {
    "users",
    "libraries",
    "memberships",
    "media",
    "media_file",
    "fragments",
    "library_media",
    "library_invitations",
    "default_library_intrinsics",
    "default_library_closure_edges",
    "default_library_backfill_jobs",
    "ingest_jobs",
    "job_events",
    "outbox",
    "operator_keys",
    "operator_actions",
    "media_merges",
    "idempotency_keys",
    "rate_limit_windows",
    # Pre-signed upload state (token nonce, filename): docs/uploads.md.
    "media_uploads",
    # Per-user storage usage (SPEC §3) and files to delete from storage (migration 0013).
    "storage_usage",
    "storage_deletions",
    # Per operator key request counters (migration 0013).
    "operator_rate_limit_windows",
    # SPEC §10 "Workers".
    "workers",
    # Background operator operations (bulk requeue), each one a job: docs/operations.md.
    "operations",
    # SPEC §10 "Dead letters": the record operators list and replay from.
    "dead_letters",
    # SPEC §10 "Signed webhooks".
    "webhook_subscriptions",
    "webhook_deliveries",
}

# Constraint and index names that SPEC §3 and the error translation depend on.
NAMED_CONSTRAINTS = {
    "ck_libraries_name_length",
    "ck_memberships_role",
    "pk_memberships",
    "ck_media_kind",
    "ck_library_invitations_not_self",
    "ck_library_invitations_responded_iff_not_pending",
    "ck_library_invitations_status",
    "ck_library_invitations_role",
    "uq_fragments_media_id_idx",
    "pk_library_media",
    "pk_default_library_intrinsics",
    "pk_default_library_closure_edges",
    "pk_default_library_backfill_jobs",
    "pk_idempotency_keys",
    "ck_operator_keys_role",
    *(
        f"ck_{table}_{name}"
        for table in ("ingest_jobs", "default_library_backfill_jobs")
        for name in (
            "status",
            "attempts_non_negative",
            "finished_iff_terminal",
            "lease_iff_running",
        )
    ),
}
NAMED_INDEXES = {
    "uix_libraries_one_default_per_user",
    "uix_media_canonical_url",
    "uix_media_file_sha256",
    "uix_library_invitations_one_pending",
    "uix_operator_keys_name",
    "ix_memberships_user_id_library_id_role",
    "ix_library_media_media_id_library_id",
    "ix_default_library_closure_edges_source_default_media",
    "ix_default_library_closure_edges_default_media",
    "ix_default_library_backfill_jobs_status_next_attempt_at",
}


@pytest_asyncio.fixture
async def empty_db() -> AsyncIterator[str]:
    name = unique_name("nexus_mig")
    await create_database(name)
    try:
        yield name
    finally:
        await drop_database(name)


async def _fetch_set(db: str, sql: str) -> set[str]:
    conn = await asyncpg.connect(asyncpg_dsn(db))
    try:
        return {r[0] for r in await conn.fetch(sql)}
    finally:
        await conn.close()


async def _tables(db: str) -> set[str]:
    return await _fetch_set(db, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")


async def _enum_types(db: str) -> set[str]:
    return await _fetch_set(
        db,
        "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
        "WHERE n.nspname = 'public' AND t.typtype = 'e'",
    )


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, load_all_models()))


async def _drift(db: str) -> list[Any]:
    engine = create_async_engine(sqlalchemy_url(db))
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_diff)
    finally:
        await engine.dispose()


async def test_upgrade_from_empty_creates_every_spec_table(empty_db: str) -> None:
    assert await _tables(empty_db) == set()
    await migrate_async(sqlalchemy_url(empty_db))
    assert await _tables(empty_db) == SPEC_TABLES | {"alembic_version"}
    assert await _enum_types(empty_db) == {"processing_status", "failure_stage"}


async def test_named_constraints_and_indexes_exist(template_db: str) -> None:
    constraints = await _fetch_set(template_db, "SELECT conname FROM pg_constraint")
    indexes = await _fetch_set(
        template_db, "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"
    )
    assert NAMED_CONSTRAINTS - constraints == set()
    assert NAMED_INDEXES - indexes == set()


async def test_downgrade_to_base_leaves_nothing_and_upgrade_again_works(empty_db: str) -> None:
    url = sqlalchemy_url(empty_db)
    await migrate_async(url)
    await migrate_async(url, "downgrade", "base")
    assert await _tables(empty_db) == {"alembic_version"}
    assert await _enum_types(empty_db) == set()
    await migrate_async(url)
    assert await _tables(empty_db) == SPEC_TABLES | {"alembic_version"}
    assert await _drift(empty_db) == []


async def test_no_drift_between_models_and_migrations(empty_db: str) -> None:
    await migrate_async(sqlalchemy_url(empty_db))
    assert await _drift(empty_db) == []


async def test_template_is_at_head_without_drift(template_db: str) -> None:
    assert await _drift(template_db) == []


async def test_drift_check_sees_a_missing_index_and_a_changed_column(empty_db: str) -> None:
    """Guards the guard: the comparison must notice when the schema differs."""
    await migrate_async(sqlalchemy_url(empty_db))
    conn = await asyncpg.connect(asyncpg_dsn(empty_db))
    try:
        await conn.execute("DROP INDEX uix_media_canonical_url")
        await conn.execute("ALTER TABLE outbox ALTER COLUMN topic TYPE text")
    finally:
        await conn.close()
    kinds = {(d[0] if isinstance(d, tuple) else d[0][0]) for d in await _drift(empty_db)}
    assert "add_index" in kinds
    assert "modify_type" in kinds
