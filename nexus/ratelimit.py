"""Rate limits held in Postgres, shared by every API process: per user
(`rate_limit_windows`) and per operator key (`operator_rate_limit_windows`).

Fixed windows: a hit is one statement, `INSERT ... ON CONFLICT DO UPDATE SET hits = hits + 1
RETURNING hits`, on the row of (user, bucket, start of the current window), with the
window computed from the database clock (so processes with skewed clocks agree). The
conflicting upsert serialises concurrent hits on the row lock, so N processes never let
more than `limit` hits through in one window. A fixed window allows up to twice the limit
across a window boundary; for abuse control of ingestion that is acceptable and it keeps
the check to one short statement.

Callers run `hit` on its own (an autocommit statement, or a short transaction committed
at once) so that the row lock is not held for the duration of the request.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.elements import TextClause

from nexus.errors import NexusError

INGEST_BUCKET = "ingest"
OPERATOR_BUCKET = "operator"
DEFAULT_WINDOW_SECONDS = 60
# Windows older than this are garbage (kept a little so operators can look at recent ones).
RETENTION = timedelta(hours=1)


@dataclass(frozen=True)
class Counters:
    """A table of fixed-window counters and the column naming whose they are."""

    table: str
    subject: str


USERS = Counters("rate_limit_windows", "user_id")
OPERATOR_KEYS = Counters("operator_rate_limit_windows", "operator_key_id")


def _hit_sql(counters: Counters) -> TextClause:
    return text(
        f"""
        WITH w AS (
            SELECT to_timestamp(floor(extract(epoch FROM clock_timestamp()) / :w) * :w)
                AS start
        )
        INSERT INTO {counters.table} AS r ({counters.subject}, bucket, window_start, hits)
        SELECT :u, :b, w.start, 1 FROM w
        ON CONFLICT ({counters.subject}, bucket, window_start) DO UPDATE SET hits = r.hits + 1
        RETURNING r.hits,
            extract(epoch FROM r.window_start + make_interval(secs => :w) - clock_timestamp())
                AS remaining
        """
    )


_HIT = {counters: _hit_sql(counters) for counters in (USERS, OPERATOR_KEYS)}


@dataclass(frozen=True)
class Hit:
    hits: int
    limit: int
    seconds_left: float

    @property
    def allowed(self) -> bool:
        return self.hits <= self.limit

    @property
    def retry_after(self) -> int:
        """Whole seconds until the window ends (at least 1)."""
        return max(1, math.ceil(self.seconds_left))


class RateLimited(NexusError):
    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "E_RATE_LIMITED",
            "too many requests; try again later",
            details={"retry_after_seconds": retry_after},
            retry_after=retry_after,
        )


async def hit(
    session: AsyncSession | AsyncConnection,
    user_id: uuid.UUID,
    bucket: str,
    *,
    limit: int,
    window_seconds: int = DEFAULT_WINDOW_SECONDS,
    counters: Counters = USERS,
) -> Hit:
    """Count one hit of `user_id` (an operator key id with `counters=OPERATOR_KEYS`) on
    `bucket` in the current window (every attempt counts, refused ones too) and report
    whether it is within `limit`."""
    params = {"u": user_id, "b": bucket, "w": window_seconds}
    row = (await session.execute(_HIT[counters], params)).one()
    return Hit(hits=int(row.hits), limit=limit, seconds_left=float(row.remaining))


async def check(
    session: AsyncSession,
    user_id: uuid.UUID,
    bucket: str,
    *,
    limit: int,
    window_seconds: int = DEFAULT_WINDOW_SECONDS,
) -> Hit:
    """`hit`, raising 429 E_RATE_LIMITED (with `Retry-After`) past the limit."""
    result = await hit(session, user_id, bucket, limit=limit, window_seconds=window_seconds)
    if not result.allowed:
        raise RateLimited(result.retry_after)
    return result


async def prune_windows(session: AsyncSession, *, older_than: timedelta = RETENTION) -> int:
    """Delete windows (users' and operator keys') that started more than `older_than` ago;
    returns how many."""
    total = 0
    for counters in (USERS, OPERATOR_KEYS):
        result = await session.execute(
            text(
                f"DELETE FROM {counters.table} WHERE window_start < now() - CAST(:age AS interval)"
            ),
            {"age": older_than},
        )
        total += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return total
