"""Every named invariant of SPEC §3 is held by the database, under its exact name.

Each test inserts a valid row, then a violating one, and checks the error names exactly the
constraint (or unique index) that must refuse it. Raw asyncpg on a cloned database.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from tests.support.services import asyncpg_dsn

JOB_TABLES = ("ingest_jobs", "default_library_backfill_jobs")


def _now() -> datetime:
    return datetime.now(UTC)


@pytest_asyncio.fixture
async def conn(db_name: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(asyncpg_dsn(db_name))
    try:
        yield connection
    finally:
        await connection.close()


async def violates(
    conn: asyncpg.Connection,
    error: type[asyncpg.PostgresError],
    constraint: str,
    sql: str,
    *args: Any,
) -> None:
    """Run `sql` in a savepoint and assert it fails with `error` naming `constraint`."""
    with pytest.raises(error) as caught:
        async with conn.transaction():
            await conn.execute(sql, *args)
    assert caught.value.constraint_name == constraint, str(caught.value)


async def user(conn: asyncpg.Connection) -> uuid.UUID:
    return await conn.fetchval("INSERT INTO users DEFAULT VALUES RETURNING id")


async def library(
    conn: asyncpg.Connection, owner: uuid.UUID, *, name: str = "lib", default: bool = False
) -> uuid.UUID:
    return await conn.fetchval(
        "INSERT INTO libraries (owner_user_id, name, is_default) VALUES ($1, $2, $3) RETURNING id",
        owner,
        name,
        default,
    )


async def media(conn: asyncpg.Connection, kind: str = "web_article", **cols: Any) -> uuid.UUID:
    names = ["kind", *cols]
    values = [kind, *cols.values()]
    params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    return await conn.fetchval(
        f"INSERT INTO media ({', '.join(names)}) VALUES ({params}) RETURNING id", *values
    )


# -- libraries and memberships --------------------------------------------------------------


async def test_library_name_length(conn: asyncpg.Connection) -> None:
    owner = await user(conn)
    await library(conn, owner, name="x")
    await library(conn, owner, name="x" * 100)
    sql = "INSERT INTO libraries (owner_user_id, name) VALUES ($1, $2)"
    for bad in ("", "x" * 101):
        await violates(
            conn, asyncpg.CheckViolationError, "ck_libraries_name_length", sql, owner, bad
        )


async def test_one_default_library_per_user(conn: asyncpg.Connection) -> None:
    owner, other = await user(conn), await user(conn)
    await library(conn, owner, default=True)
    await library(conn, owner, default=False)
    await library(conn, other, default=True)
    await violates(
        conn,
        asyncpg.UniqueViolationError,
        "uix_libraries_one_default_per_user",
        "INSERT INTO libraries (owner_user_id, name, is_default) VALUES ($1, 'again', true)",
        owner,
    )


async def test_membership_role_and_primary_key(conn: asyncpg.Connection) -> None:
    owner = await user(conn)
    lib = await library(conn, owner)
    sql = "INSERT INTO memberships (library_id, user_id, role) VALUES ($1, $2, $3)"
    await conn.execute(sql, lib, owner, "admin")
    await conn.execute(sql, lib, await user(conn), "member")
    await violates(
        conn,
        asyncpg.CheckViolationError,
        "ck_memberships_role",
        sql,
        lib,
        await user(conn),
        "owner",
    )
    await violates(conn, asyncpg.UniqueViolationError, "pk_memberships", sql, lib, owner, "member")


async def test_library_media_primary_key(conn: asyncpg.Connection) -> None:
    lib = await library(conn, await user(conn))
    m = await media(conn)
    sql = "INSERT INTO library_media (library_id, media_id) VALUES ($1, $2)"
    await conn.execute(sql, lib, m)
    await violates(conn, asyncpg.UniqueViolationError, "pk_library_media", sql, lib, m)


# -- media ------------------------------------------------------------------------------------


async def test_media_kind(conn: asyncpg.Connection) -> None:
    for kind in ("web_article", "epub", "pdf", "video", "podcast_episode"):
        await media(conn, kind)
    await violates(
        conn,
        asyncpg.CheckViolationError,
        "ck_media_kind",
        "INSERT INTO media (kind) VALUES ('book')",
    )


async def test_media_canonical_url_unique_per_kind(conn: asyncpg.Connection) -> None:
    url = "https://example.com/a"
    await media(conn, "web_article", canonical_url=url)
    await media(conn, "pdf", canonical_url=url)  # another kind: allowed
    await media(conn, "web_article")  # NULL urls never collide
    await media(conn, "web_article")
    await violates(
        conn,
        asyncpg.UniqueViolationError,
        "uix_media_canonical_url",
        "INSERT INTO media (kind, canonical_url) VALUES ('web_article', $1)",
        url,
    )


async def test_media_file_sha256_unique_per_user_and_file_kind(conn: asyncpg.Connection) -> None:
    alice, bob = await user(conn), await user(conn)
    sha = "a" * 64
    await media(conn, "pdf", created_by_user_id=alice, file_sha256=sha)
    await media(conn, "pdf", created_by_user_id=bob, file_sha256=sha)  # another user
    await media(conn, "epub", created_by_user_id=alice, file_sha256=sha)  # another kind
    await media(conn, "video", created_by_user_id=alice, file_sha256=sha)  # not a file kind
    await media(conn, "video", created_by_user_id=alice, file_sha256=sha)
    await violates(
        conn,
        asyncpg.UniqueViolationError,
        "uix_media_file_sha256",
        "INSERT INTO media (kind, created_by_user_id, file_sha256) VALUES ('pdf', $1, $2)",
        alice,
        sha,
    )


async def test_processing_status_and_failure_stage_are_enums(conn: asyncpg.Connection) -> None:
    m = await media(conn)
    assert (
        await conn.fetchval("SELECT processing_status::text FROM media WHERE id = $1", m)
        == "pending"
    )
    await conn.execute(
        "UPDATE media SET processing_status = 'failed', failure_stage = 'extract' WHERE id = $1", m
    )
    for column, value, enum in (
        ("processing_status", "done", "processing_status"),
        ("failure_stage", "download", "failure_stage"),
    ):
        with pytest.raises(asyncpg.InvalidTextRepresentationError, match=enum):
            async with conn.transaction():
                await conn.execute(f"UPDATE media SET {column} = $2 WHERE id = $1", m, value)


async def test_fragments_unique_media_idx(conn: asyncpg.Connection) -> None:
    m = await media(conn)
    sql = (
        "INSERT INTO fragments (media_id, idx, canonical_text, html_sanitized) "
        "VALUES ($1, $2, '', '')"
    )
    await conn.execute(sql, m, 0)
    await conn.execute(sql, m, 1)
    await conn.execute(sql, await media(conn), 0)
    await violates(conn, asyncpg.UniqueViolationError, "uq_fragments_media_id_idx", sql, m, 1)
    await violates(conn, asyncpg.CheckViolationError, "ck_fragments_idx_non_negative", sql, m, -1)


async def test_media_merges_not_self(conn: asyncpg.Connection) -> None:
    winner = await media(conn)
    sql = "INSERT INTO media_merges (from_media_id, into_media_id) VALUES ($1, $2)"
    await conn.execute(sql, uuid.uuid4(), winner)
    await violates(
        conn, asyncpg.CheckViolationError, "ck_media_merges_not_self", sql, winner, winner
    )


async def test_media_creator_set_null_and_library_cascade(conn: asyncpg.Connection) -> None:
    owner = await user(conn)
    lib = await library(conn, owner, default=True)
    m = await media(conn, created_by_user_id=owner)
    await conn.execute("INSERT INTO library_media (library_id, media_id) VALUES ($1, $2)", lib, m)
    await conn.execute("DELETE FROM users WHERE id = $1", owner)
    assert await conn.fetchval("SELECT created_by_user_id FROM media WHERE id = $1", m) is None
    assert await conn.fetchval("SELECT count(*) FROM libraries WHERE id = $1", lib) == 0
    assert await conn.fetchval("SELECT count(*) FROM library_media WHERE media_id = $1", m) == 0


# -- invitations ------------------------------------------------------------------------------

INVITE = (
    "INSERT INTO library_invitations (library_id, inviter_user_id, invitee_user_id, role, "
    "status, responded_at) VALUES ($1, $2, $3, $4, $5, $6)"
)


async def test_invitation_checks(conn: asyncpg.Connection) -> None:
    inviter, invitee = await user(conn), await user(conn)
    lib = await library(conn, inviter)
    await conn.execute(INVITE, lib, inviter, invitee, "member", "accepted", _now())
    cases = [
        ("ck_library_invitations_not_self", (inviter, inviter, "member", "pending", None)),
        ("ck_library_invitations_role", (inviter, invitee, "owner", "pending", None)),
        ("ck_library_invitations_status", (inviter, invitee, "member", "maybe", _now())),
        (
            "ck_library_invitations_responded_iff_not_pending",
            (inviter, invitee, "member", "pending", _now()),
        ),
        (
            "ck_library_invitations_responded_iff_not_pending",
            (inviter, invitee, "admin", "declined", None),
        ),
    ]
    for constraint, values in cases:
        await violates(conn, asyncpg.CheckViolationError, constraint, INVITE, lib, *values)


async def test_one_pending_invitation_per_invitee(conn: asyncpg.Connection) -> None:
    inviter, invitee = await user(conn), await user(conn)
    lib = await library(conn, inviter)
    await conn.execute(INVITE, lib, inviter, invitee, "member", "revoked", _now())
    await conn.execute(INVITE, lib, inviter, invitee, "member", "pending", None)
    await conn.execute(
        INVITE, await library(conn, inviter), inviter, invitee, "member", "pending", None
    )
    await violates(
        conn,
        asyncpg.UniqueViolationError,
        "uix_library_invitations_one_pending",
        INVITE,
        lib,
        inviter,
        invitee,
        "admin",
        "pending",
        None,
    )


# -- jobs -------------------------------------------------------------------------------------


async def _job_key(conn: asyncpg.Connection, table: str) -> dict[str, uuid.UUID]:
    """A fresh, FK-valid key for one row of `table`."""
    if table == "ingest_jobs":
        return {"media_id": await media(conn)}
    u = await user(conn)
    return {
        "default_library_id": await library(conn, u, default=True),
        "source_library_id": await library(conn, await user(conn)),
        "user_id": u,
    }


async def _insert_job(conn: asyncpg.Connection, table: str, **cols: Any) -> None:
    values = {**await _job_key(conn, table), **cols}
    params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    await conn.execute(
        f"INSERT INTO {table} ({', '.join(values)}) VALUES ({params})", *values.values()
    )


async def _job_violates(conn: asyncpg.Connection, table: str, constraint: str, **cols: Any) -> None:
    with pytest.raises(asyncpg.CheckViolationError) as caught:
        async with conn.transaction():
            await _insert_job(conn, table, **cols)
    assert caught.value.constraint_name == f"ck_{table}_{constraint}", str(caught.value)


@pytest.mark.parametrize("table", JOB_TABLES)
async def test_job_checks(conn: asyncpg.Connection, table: str) -> None:
    lease = {"lease_token": uuid.uuid4(), "lease_owner": "w1", "lease_expires_at": _now()}
    # valid rows in every status
    await _insert_job(conn, table)
    await _insert_job(conn, table, status="running", attempts=1, **lease)
    await _insert_job(conn, table, status="completed", attempts=1, finished_at=_now())
    await _insert_job(conn, table, status="failed", attempts=6, finished_at=_now())

    await _job_violates(conn, table, "status", status="paused")
    await _job_violates(conn, table, "attempts_non_negative", attempts=-1)
    await _job_violates(conn, table, "finished_iff_terminal", status="completed")
    await _job_violates(conn, table, "finished_iff_terminal", status="failed")
    await _job_violates(conn, table, "finished_iff_terminal", finished_at=_now())
    await _job_violates(conn, table, "lease_iff_running", status="running")
    await _job_violates(conn, table, "lease_iff_running", **lease)
    await _job_violates(
        conn, table, "lease_iff_running", status="running", lease_token=uuid.uuid4()
    )


async def test_backfill_job_primary_key(conn: asyncpg.Connection) -> None:
    key = await _job_key(conn, "default_library_backfill_jobs")
    sql = (
        "INSERT INTO default_library_backfill_jobs (default_library_id, source_library_id, user_id)"
        " VALUES ($1, $2, $3)"
    )
    await conn.execute(sql, *key.values())
    await violates(
        conn, asyncpg.UniqueViolationError, "pk_default_library_backfill_jobs", sql, *key.values()
    )


# -- closure ----------------------------------------------------------------------------------


async def test_closure_edges_and_intrinsics_keys(conn: asyncpg.Connection) -> None:
    u = await user(conn)
    d = await library(conn, u, default=True)
    s = await library(conn, await user(conn))
    m = await media(conn)
    edge = (
        "INSERT INTO default_library_closure_edges (default_library_id, media_id, "
        "source_library_id) VALUES ($1, $2, $3)"
    )
    await conn.execute(edge, d, m, s)
    await violates(
        conn, asyncpg.UniqueViolationError, "pk_default_library_closure_edges", edge, d, m, s
    )
    intrinsic = (
        "INSERT INTO default_library_intrinsics (default_library_id, media_id) VALUES ($1, $2)"
    )
    await conn.execute(intrinsic, d, m)
    await violates(
        conn, asyncpg.UniqueViolationError, "pk_default_library_intrinsics", intrinsic, d, m
    )
    # Deleting the source library cascades its edges.
    await conn.execute("DELETE FROM libraries WHERE id = $1", s)
    assert await conn.fetchval("SELECT count(*) FROM default_library_closure_edges") == 0


# -- operators and idempotency ----------------------------------------------------------------


async def test_operator_keys_role_and_unique_name(conn: asyncpg.Connection) -> None:
    sql = "INSERT INTO operator_keys (name, key_hash, role) VALUES ($1, $2, $3)"
    await conn.execute(sql, "alice", "h1", "admin")
    await conn.execute(sql, "bob", "h2", "viewer")
    await violates(
        conn, asyncpg.CheckViolationError, "ck_operator_keys_role", sql, "carol", "h3", "root"
    )
    await violates(
        conn, asyncpg.CheckViolationError, "ck_operator_keys_name_length", sql, "", "h3", "admin"
    )
    await violates(
        conn, asyncpg.UniqueViolationError, "uix_operator_keys_name", sql, "alice", "h3", "viewer"
    )
    await violates(
        conn,
        asyncpg.UniqueViolationError,
        "uix_operator_keys_key_hash",
        sql,
        "carol",
        "h1",
        "viewer",
    )


async def test_idempotency_keys_primary_key(conn: asyncpg.Connection) -> None:
    u = await user(conn)
    sql = (
        "INSERT INTO idempotency_keys (user_id, route, key, request_hash, status_code) "
        "VALUES ($1, $2, $3, 'h', 201)"
    )
    await conn.execute(sql, u, "POST /libraries", "k1")
    await conn.execute(sql, u, "POST /media/from_url", "k1")
    await conn.execute(sql, await user(conn), "POST /libraries", "k1")
    await violates(
        conn, asyncpg.UniqueViolationError, "pk_idempotency_keys", sql, u, "POST /libraries", "k1"
    )
    await violates(
        conn,
        asyncpg.CheckViolationError,
        "ck_idempotency_keys_key_length",
        sql,
        u,
        "POST /libraries",
        "",
    )


async def test_outbox_and_job_events_defaults(conn: asyncpg.Connection) -> None:
    row = await conn.fetchrow(
        "INSERT INTO outbox (topic, key, payload) VALUES ('t', 'k', '{}') "
        "RETURNING id, headers::text, publish_attempts, published_at"
    )
    assert row["id"] >= 1 and row["headers"] == "{}" and row["publish_attempts"] == 0
    assert row["published_at"] is None
    await violates(
        conn,
        asyncpg.CheckViolationError,
        "ck_outbox_publish_attempts_non_negative",
        "INSERT INTO outbox (topic, payload, publish_attempts) VALUES ('t', '{}', -1)",
    )
    event_id = await conn.fetchval(
        "INSERT INTO job_events (job_type, job_key, to_status, actor) "
        "VALUES ('ingest', '{}', 'pending', 'test') RETURNING id"
    )
    assert event_id >= 1
