"""Backfill jobs as the tests see them in Postgres: seed a row in a given state, read its
row, status and ledger, count what it materialised, and wait for a status.

A job is named by its user (when the test gives that user one job) or by its whole key
(a `BackfillKey` or the dict `factories.backfill_job` returns).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.db.tx import transaction
from nexus.jobs import outbox
from nexus.libraries import invites
from nexus.libraries.states import LibraryRole
from nexus.messaging.topics import Topics
from nexus.sharing import backfill
from tests.support import factories as f
from tests.support.db import Db, count, rows
from tests.support.processes import poll

# Settings of agents that rescue, re-drive and retry within seconds.
FAST_RESCUE: dict[str, Any] = {
    "lease_seconds": 3.0,
    "backfill_retry_delays": (0.5, 1.0),
    "scheduler_interval_seconds": 0.3,
    "scheduler_redeliver_after_seconds": 2.0,
    "rescue_interval_seconds": 0.3,
}
JobRef = uuid.UUID | backfill.BackfillKey | Mapping[str, uuid.UUID]
TABLE = "default_library_backfill_jobs"
KEY_COLUMNS = ("default_library_id", "source_library_id", "user_id")


def _key(job: JobRef) -> dict[str, uuid.UUID]:
    """The columns that name `job`: its user alone, its whole key, or the key columns a
    mapping gives (then it may name several jobs)."""
    if isinstance(job, uuid.UUID):
        return {"user_id": job}
    values = job.as_dict() if isinstance(job, backfill.BackfillKey) else job
    return {column: values[column] for column in KEY_COLUMNS if column in values}


def _row_filter(job: JobRef) -> tuple[str, dict[str, Any]]:
    key = _key(job)
    return " AND ".join(f"{c} = :{c}" for c in key), dict(key)


def _ledger_filter(job: JobRef) -> tuple[str, dict[str, Any]]:
    key = _key(job)
    return " AND ".join(f"job_key->>'{c}' = :{c}" for c in key), {c: str(v) for c, v in key.items()}


def key_json(key: JobRef, **extra: Any) -> dict[str, Any]:
    """The job's key as a JSON body or message names it (ids as strings), with `extra`."""
    return {column: str(value) for column, value in _key(key).items()} | extra


# ------------------------------------------------------------------------- reading


async def job(db: Db, of: JobRef, columns: str = "*") -> Row[Any] | None:
    """The job's row (None when there is none; more than one is an error)."""
    where, params = _row_filter(of)
    found = await rows(db, f"SELECT {columns} FROM {TABLE} WHERE {where}", **params)
    assert len(found) <= 1, f"{len(found)} jobs match {params}"
    return found[0] if found else None


async def status(db: Db, of: JobRef) -> str | None:
    found = await job(db, of, "status")
    return None if found is None else str(found.status)


async def running_lease_owner(db: Db, of: JobRef) -> str | None:
    """The worker id holding the job's lease while it runs (None otherwise)."""
    found = await job(db, of, "status, lease_owner")
    if found is None or found.status != "running" or found.lease_owner is None:
        return None
    return str(found.lease_owner)


async def events(db: Db, of: JobRef, columns: str, *, order_by: str = "id") -> list[Row[Any]]:
    """The job's ledger rows (`job_events`), oldest first; each row compares as a tuple."""
    where, params = _ledger_filter(of)
    return await rows(
        db,
        f"SELECT {columns} FROM job_events WHERE job_type = 'backfill' AND {where} "
        f"ORDER BY {order_by}",
        **params,
    )


async def edge_count(db: Db, default_library_id: uuid.UUID) -> int:
    return await count(
        db,
        "SELECT count(*) FROM default_library_closure_edges WHERE default_library_id = :d",
        d=default_library_id,
    )


async def library_row_count(db: Db, library_id: uuid.UUID) -> int:
    return await count(db, "SELECT count(*) FROM library_media WHERE library_id = :l", l=library_id)


async def wait_for_status(
    sm: async_sessionmaker[AsyncSession],
    of: JobRef,
    wanted: str,
    *,
    deadline_s: float = 30.0,
    interval: float = 0.1,
    what: str | None = None,
) -> None:
    """Poll until the job's row has status `wanted`."""

    async def reached() -> bool:
        return await status(sm, of) == wanted

    await poll(reached, deadline_s=deadline_s, interval=interval, what=what or f"job {wanted}")


# ------------------------------------------------------------------------- seeding


def values_for(
    status: str,
    *,
    now: datetime | None = None,
    attempts: int = 1,
    lease_owner: str = "elsewhere",
    lease_for: timedelta = timedelta(minutes=10),
    **extra: Any,
) -> dict[str, Any]:
    """Column values of a job row consistent with `status`: a finished job has its
    `finished_at` (a cancelled one its E_CANCELLED too), a running one a live lease held by
    `lease_owner`."""
    now = now or datetime.now(UTC)
    values: dict[str, Any] = {"status": status, "attempts": attempts}
    if status in ("completed", "failed", "cancelled"):
        values["finished_at"] = now
    if status == "cancelled":
        values["last_error_code"] = "E_CANCELLED"
    if status == "running":
        values.update(
            lease_token=uuid.uuid4(), lease_owner=lease_owner, lease_expires_at=now + lease_for
        )
    return values | extra


async def seed(db: Db, *, n_media: int = 3, **values: Any) -> dict[str, uuid.UUID]:
    """A sharing scenario of its own (a viewer, a shared library of `n_media`) and its
    backfill job row with `values`; the job's key. Through a sessionmaker it commits."""
    if isinstance(db, AsyncSession):
        sc = await f.sharing_scenario(db, n_media=n_media)
        return await f.backfill_job(db, sc["d"], sc["s"], sc["viewer"], **values)
    async with transaction(db) as s:
        return await seed(s, n_media=n_media, **values)


async def more_sources(
    sm: async_sessionmaker[AsyncSession], *, n_media: int, more: int
) -> tuple[dict[str, Any], list[uuid.UUID]]:
    """A sharing scenario, and `more` empty libraries of its owner that the viewer is a
    member of too: each the source of another of the viewer's jobs."""
    async with transaction(sm) as s:
        sc = await f.sharing_scenario(s, n_media=n_media)
        sources = [await f.library(s, sc["owner"]) for _ in range(more)]
        for lib in sources:
            await f.member(s, lib, sc["viewer"])
    return sc, sources


async def requeue_failed(
    sm: async_sessionmaker[AsyncSession],
    topics: Topics,
    key: backfill.BackfillKey,
    *,
    request_id: str | None = None,
    correlation_id: str | None = None,
) -> None:
    """A failed job row, then the operator's requeue of it: pending, a ledger row and an
    outbox message that nobody publishes (only the agents' leader relay delivers it)."""
    async with transaction(sm) as s:
        await f.backfill_job(
            s, *key.as_dict().values(), status="failed", finished_at=datetime.now(UTC)
        )
    async with transaction(sm) as s:
        await backfill.requeue(
            s, key, topics, actor="test", request_id=request_id, correlation_id=correlation_id
        )


async def shared_library(
    sm: async_sessionmaker[AsyncSession], n_media: int
) -> tuple[uuid.UUID, uuid.UUID]:
    """(owner, S): a shared library of `n_media` fresh media (one statement, for big n)."""
    async with transaction(sm) as s:
        owner, _ = await f.account(s)
        lib = await f.library(s, owner)
        await s.execute(
            text(
                "WITH m AS (INSERT INTO media (kind, title) SELECT 'web_article', 't' || g "
                "FROM generate_series(1, :n) g RETURNING id) "
                "INSERT INTO library_media (library_id, media_id) SELECT :l, id FROM m"
            ),
            {"n": n_media, "l": lib},
        )
    return owner, lib


async def accepted_invite(
    sm: async_sessionmaker[AsyncSession], topics: Topics, owner: uuid.UUID, lib: uuid.UUID
) -> tuple[uuid.UUID, uuid.UUID, list[int]]:
    """A new user accepts an invite to `lib` (the real service path): (user, d, outbox ids)."""
    async with transaction(sm) as s:
        user, d = await f.account(s)
        invite = await invites.create_invite(s, owner, lib, user, LibraryRole.MEMBER)
    async with transaction(sm) as s:
        await invites.accept_invite(
            s, user, invite.id, topics, request_id=None, correlation_id=f"accept-{user}"
        )
        ids = outbox.enqueued_ids(s)
    return user, d, ids


async def closure_violations(sm: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sm() as s:
        return await f.closure_violations(s)
