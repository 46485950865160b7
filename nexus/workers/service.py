"""Worker identity and heartbeats (SPEC §10 "Workers").

A worker registers at start (`register`), beats every `heartbeat_seconds` (`beat`, which
also records its assigned partitions and status), and marks itself `stopped` on a clean
exit. It is *dead* once it has missed `MISSED_BEATS` beats: the leader's rescue treats its
leases as lost (`dead_worker_ids`), and listings show it as not alive. Every write is one
upsert, so a worker whose row was pruned or never written (a database outage at start)
comes back on its next beat.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from nexus.db.types import Record

MISSED_BEATS = 3
STATUSES = ("running", "draining", "stopped")


def new_worker_id() -> str:
    """`host-pid-random`: unique across restarts and machines."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


_UPSERT = text(
    """
    INSERT INTO workers (id, host, pid, status, assigned, version)
    VALUES (:worker_id, :host, :pid, :status, CAST(:assigned AS jsonb), :version)
    ON CONFLICT (id) DO UPDATE SET last_heartbeat_at = now(), status = EXCLUDED.status,
        assigned = EXCLUDED.assigned
    """
)


@dataclass(frozen=True)
class Beat:
    worker_id: str
    status: str
    assigned: Sequence[str]
    version: str
    host: str = ""
    pid: int = 0


async def beat(conn: AsyncSession | AsyncConnection, b: Beat) -> None:
    """Register or refresh this worker's row (one statement)."""
    if b.status not in STATUSES:
        raise ValueError(f"unknown worker status {b.status!r}")
    await conn.execute(
        _UPSERT,
        {
            "worker_id": b.worker_id,
            "host": b.host or socket.gethostname(),
            "pid": b.pid or os.getpid(),
            "status": b.status,
            "assigned": json.dumps(sorted(b.assigned)),
            "version": b.version,
        },
    )


class WorkerInfo(Record):
    id: str
    host: str
    pid: int
    started_at: datetime
    last_heartbeat_at: datetime
    status: str
    assigned: list[str]
    version: str
    alive: bool


_IS_ALIVE = (
    "status <> 'stopped' AND last_heartbeat_at > now() - make_interval(secs => :dead_after_seconds)"
)


async def list_workers(
    session: AsyncSession,
    *,
    heartbeat_seconds: float,
    include_gone: bool = False,
    limit: int = 200,
    after: tuple[datetime, str] | None = None,
) -> list[WorkerInfo]:
    """Live workers (or every known one with `include_gone`), newest `started_at` first
    (then id, descending); `after` is the (started_at, id) of the last row of the previous
    page (keyset pagination)."""
    where = ["true" if include_gone else _IS_ALIVE]
    params: dict[str, object] = {
        "dead_after_seconds": MISSED_BEATS * heartbeat_seconds,
        "lim": limit,
    }
    if after is not None:
        where.append("(started_at, id) < (:after_started_at, :after_id)")
        params["after_started_at"], params["after_id"] = after
    rows = await session.execute(
        text(
            "SELECT id, host, pid, started_at, last_heartbeat_at, status, assigned, version, "
            f"{_IS_ALIVE} AS alive FROM workers WHERE {' AND '.join(where)} "
            "ORDER BY started_at DESC, id DESC LIMIT :lim"
        ),
        params,
    )
    return [WorkerInfo(**dict(r._mapping)) for r in rows]


def dead_workers_sql() -> str:
    """SQL condition on a `lease_owner` column: the owner is a known worker that stopped
    or missed `MISSED_BEATS` beats (binds `:dead_after_seconds`). Owners unknown to the
    table are never judged by it (their leases expire as usual)."""
    return (
        "lease_owner IN (SELECT id FROM workers WHERE status = 'stopped' OR "
        "last_heartbeat_at < now() - make_interval(secs => :dead_after_seconds))"
    )


_PRUNE = text(
    "DELETE FROM workers WHERE last_heartbeat_at < now() - make_interval(secs => :older_than)"
)


async def prune(conn: AsyncSession | AsyncConnection, *, older_than_seconds: float) -> int:
    """Forget workers not heard of for a long time (their leases are long rescued)."""
    result = await conn.execute(_PRUNE, {"older_than": older_than_seconds})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


_ALIVE = text(
    """
    SELECT count(*) FROM workers WHERE status <> 'stopped'
        AND last_heartbeat_at > now() - make_interval(secs => :dead_after_seconds)
    """
)


async def count_alive(session: AsyncSession, *, heartbeat_seconds: float) -> int:
    """Workers that are not stopped and have not missed `MISSED_BEATS` beats."""
    n = await session.scalar(_ALIVE, {"dead_after_seconds": MISSED_BEATS * heartbeat_seconds})
    return int(n or 0)
