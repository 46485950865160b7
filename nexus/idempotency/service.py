"""Idempotency keys for creating POST routes (SPEC §2), held in Postgres.

Protocol, all inside the request's own transaction:

1. `claim()` runs `INSERT ... ON CONFLICT (user_id, route, key) DO UPDATE ... WHERE the
   existing row is older than the TTL RETURNING`. A returned row means this transaction
   owns the key (new, or expired and reclaimed): do the work, then `complete()` stores the
   status and body before commit. A concurrent request with the same key blocks on the
   uncommitted row; when the owner commits it sees the stored response, when the owner
   rolls back (the request failed) it becomes the owner itself.
2. Otherwise `claim()` returns the stored row: the caller compares the request hash and
   replays the stored response (same) or refuses with 409 E_IDEMPOTENCY_KEY_REUSED
   (different).

Only successful responses are stored: a failed request rolls its transaction back, claim
included, so retrying a failed request with the same key runs it again.
"""

from __future__ import annotations

import json
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from nexus.errors import Conflict, InvalidRequest

TTL = timedelta(hours=24)
MAX_KEY_CHARS = 255
# status_code of a claimed row whose response is not stored yet (never visible to other
# transactions: it only exists uncommitted).
IN_FLIGHT = 0


@dataclass(frozen=True)
class StoredResponse:
    request_hash: str
    status_code: int
    response: Any


def check_key(key: str) -> str:
    """400 E_INVALID_REQUEST unless 1..255 characters, none a control character (NUL
    cannot even be stored; the others are never part of a client's key)."""
    if not 1 <= len(key) <= MAX_KEY_CHARS:
        raise InvalidRequest(
            f"Idempotency-Key must be 1 to {MAX_KEY_CHARS} characters",
            details=[{"loc": ["header", "Idempotency-Key"], "msg": "length"}],
        )
    if any(unicodedata.category(char) == "Cc" for char in key):
        raise InvalidRequest(
            "Idempotency-Key must not contain control characters",
            details=[{"loc": ["header", "Idempotency-Key"], "msg": "control character"}],
        )
    return key


async def claim(
    session: AsyncSession,
    user_id: uuid.UUID,
    route: str,
    key: str,
    request_hash: str,
    *,
    ttl: timedelta = TTL,
) -> StoredResponse | None:
    """None when this transaction now owns the key; else the stored (committed) row."""
    owned = await session.scalar(
        text(
            """
            INSERT INTO idempotency_keys (user_id, route, key, request_hash, status_code)
            VALUES (:u, :r, :k, :h, :inflight)
            ON CONFLICT (user_id, route, key) DO UPDATE
                SET request_hash = EXCLUDED.request_hash, status_code = EXCLUDED.status_code,
                    response = NULL, created_at = now()
                WHERE idempotency_keys.created_at < now() - CAST(:ttl AS interval)
            RETURNING 1
            """
        ),
        {
            "u": user_id,
            "r": route,
            "k": check_key(key),
            "h": request_hash,
            "inflight": IN_FLIGHT,
            "ttl": ttl,
        },
    )
    if owned is not None:
        return None
    # The conflicting row is committed (we waited for it) and locked by our ON CONFLICT.
    row = (
        await session.execute(
            text(
                "SELECT request_hash, status_code, response FROM idempotency_keys "
                "WHERE user_id = :u AND route = :r AND key = :k"
            ),
            {"u": user_id, "r": route, "k": key},
        )
    ).one()
    return StoredResponse(row.request_hash, row.status_code, row.response)


def replay_or_conflict(stored: StoredResponse, request_hash: str) -> StoredResponse:
    """The stored response for a repeat of the same request; 409 for a different one."""
    if stored.request_hash != request_hash or stored.status_code == IN_FLIGHT:
        raise Conflict(
            "E_IDEMPOTENCY_KEY_REUSED",
            "this Idempotency-Key was already used for a different request",
        )
    return stored


async def complete(
    session: AsyncSession,
    user_id: uuid.UUID,
    route: str,
    key: str,
    status_code: int,
    response: Any,
) -> None:
    """Store the response of the request that owns the key (same transaction as the work)."""
    result = await session.execute(
        text(
            "UPDATE idempotency_keys SET status_code = :s, response = CAST(:b AS jsonb) "
            "WHERE user_id = :u AND route = :r AND key = :k AND status_code = :inflight"
        ),
        {
            "s": status_code,
            "b": _json(response),
            "u": user_id,
            "r": route,
            "k": key,
            "inflight": IN_FLIGHT,
        },
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise RuntimeError("idempotency key completed without being claimed")


async def prune_idempotency_keys(session: AsyncSession, *, older_than: timedelta = TTL) -> int:
    """Delete keys older than `older_than` (default 24 h); returns how many."""
    result = await session.execute(
        text("DELETE FROM idempotency_keys WHERE created_at < now() - CAST(:ttl AS interval)"),
        {"ttl": older_than},
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
