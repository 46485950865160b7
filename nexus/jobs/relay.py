"""The outbox relay: publishes rows that were not published right after commit, in id order,
and never lets one row block the others.

Rules (SPEC §10 "Outbox", docs/operations.md):
- A due row is unpublished, not parked, older than the relay threshold and past its
  `next_attempt_at`. Rows are taken `FOR UPDATE SKIP LOCKED`, so concurrent relays never
  publish a row twice.
- The broker refuses a row itself (`MessageRejected`: too large, invalid topic): the row
  is charged an attempt, backs off exponentially (`base * 2**(attempts-1)`, capped), and is
  parked after `max_attempts`; the relay goes on with the next rows.
- The broker is down or slow (any other `PublishError`): nothing is the row's fault, so it
  is not charged towards parking; the error is recorded and the tick stops (the rows wait
  for the broker, in order).
- Parked rows are left to operators: listed and retried (`retry_parked`) over HTTP and CLI.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus import tracing
from nexus.db.types import Record
from nexus.jobs.models import OutboxRow
from nexus.messaging.publisher import MessageRejected, Publisher, PublishError


@dataclass(frozen=True)
class RetryPolicy:
    """How a refused row backs off and when it is parked."""

    max_attempts: int = 10
    base_seconds: float = 1.0
    max_seconds: float = 300.0

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th failed publish (1-based)."""
        return min(self.max_seconds, self.base_seconds * 2 ** max(0, attempts - 1))


@dataclass(frozen=True)
class PublishReport:
    published: int
    failed: int
    parked: int = 0
    # The broker failed as a whole (not one row): the caller should wait for the next tick.
    broker_down: bool = False

    @property
    def all_published(self) -> bool:
        return self.failed == 0


_CHARGE = text(
    """
    UPDATE outbox SET publish_attempts = publish_attempts + 1, last_error = :error,
        next_attempt_at = now() + make_interval(secs => :delay_seconds),
        parked_at = CASE WHEN publish_attempts + 1 >= :max_attempts THEN now() END
    WHERE id = :row_id
    RETURNING parked_at IS NOT NULL AS parked
    """
)
_BROKER_DOWN = text(
    "UPDATE outbox SET publish_attempts = publish_attempts + 1, last_error = :error "
    "WHERE id = :row_id"
)


async def publish_locked(
    session: AsyncSession,
    publisher: Publisher,
    rows: Sequence[OutboxRow],
    policy: RetryPolicy,
) -> PublishReport:
    """Publish rows this session holds locked, in order, and record every outcome."""
    published: list[int] = []
    failed = parked = 0
    broker_down = False
    for index, row in enumerate(rows):
        headers = _headers(row)
        try:
            # The publish continues the trace stored with the row (written by another
            # request or job, maybe in another process, earlier).
            with tracing.publish_span(row.topic, tracing.extract(headers)):
                await publisher.publish(row.topic, row.key, _payload(row), tracing.inject(headers))
        except MessageRejected as exc:
            failed += 1
            params = {
                "row_id": row.id,
                "error": str(exc)[:1000],
                "delay_seconds": policy.delay(row.publish_attempts + 1),
                "max_attempts": policy.max_attempts,
            }
            parked += int(bool(await session.scalar(_CHARGE, params)))
            continue
        except PublishError as exc:
            await session.execute(_BROKER_DOWN, {"row_id": row.id, "error": str(exc)[:1000]})
            failed += len(rows) - index
            broker_down = True
            break
        published.append(row.id)
    if published:
        await session.execute(
            update(OutboxRow)
            .where(OutboxRow.id.in_(published))
            .values(published_at=func.now(), publish_attempts=OutboxRow.publish_attempts + 1)
        )
    return PublishReport(
        published=len(published), failed=failed, parked=parked, broker_down=broker_down
    )


def _payload(row: OutboxRow) -> bytes:
    return json.dumps(row.payload, separators=(",", ":")).encode()


def _headers(row: OutboxRow) -> dict[str, str]:
    return {k: str(v) for k, v in (row.headers or {}).items()}


async def relay_once(
    sessionmaker: async_sessionmaker[AsyncSession],
    publisher: Publisher,
    *,
    older_than_seconds: float,
    batch: int,
    policy: RetryPolicy | None = None,
) -> PublishReport:
    """Publish due rows left unpublished for longer than `older_than_seconds`, in id order."""
    async with sessionmaker() as session, session.begin():
        rows = (
            await session.scalars(
                select(OutboxRow)
                .where(
                    OutboxRow.published_at.is_(None),
                    OutboxRow.parked_at.is_(None),
                    OutboxRow.created_at
                    < func.now()
                    - text("make_interval(secs => :age_seconds)").bindparams(
                        age_seconds=older_than_seconds
                    ),
                    (OutboxRow.next_attempt_at.is_(None))
                    | (OutboxRow.next_attempt_at <= func.now()),
                )
                .order_by(OutboxRow.id)
                .limit(batch)
                .with_for_update(skip_locked=True)
            )
        ).all()
        return await publish_locked(session, publisher, rows, policy or RetryPolicy())


@dataclass(frozen=True)
class OutboxStats:
    unpublished: int
    parked: int
    oldest_unpublished_at: datetime | None
    oldest_age_seconds: float | None


async def stats(session: AsyncSession) -> OutboxStats:
    """Unpublished rows waiting for the relay (parked ones apart) and the oldest's age, in
    one statement (scrapes call it)."""
    waiting = OutboxRow.parked_at.is_(None)
    oldest = func.min(OutboxRow.created_at).filter(waiting)
    row = (
        await session.execute(
            select(
                func.count().filter(waiting),
                func.count().filter(OutboxRow.parked_at.is_not(None)),
                oldest,
                func.extract("epoch", func.now() - oldest),
            ).where(OutboxRow.published_at.is_(None))
        )
    ).one()
    return OutboxStats(
        unpublished=int(row[0]),
        parked=int(row[1]),
        oldest_unpublished_at=row[2],
        oldest_age_seconds=float(row[3]) if row[3] is not None else None,
    )


class OutboxItem(Record):
    """An outbox row as operators see it (`GET /internal/outbox`)."""

    id: int
    topic: str
    key: str | None
    created_at: datetime
    published_at: datetime | None
    publish_attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    parked_at: datetime | None


async def list_rows(
    session: AsyncSession, *, status: str, limit: int, after_id: int | None = None
) -> list[OutboxItem]:
    """Up to `limit + 1` rows of one status (`parked`, `unpublished`, `published`), by id."""
    t = OutboxRow
    by_status: dict[str, list[ColumnElement[bool]]] = {
        "parked": [t.parked_at.is_not(None), t.published_at.is_(None)],
        "unpublished": [t.published_at.is_(None), t.parked_at.is_(None)],
        "published": [t.published_at.is_not(None)],
    }
    conds = by_status[status]
    if after_id is not None:
        conds.append(t.id > after_id)
    rows = await session.scalars(select(t).where(*conds).order_by(t.id).limit(limit + 1))
    return [OutboxItem.model_validate(r) for r in rows]


_UNPARK = text(
    """
    UPDATE outbox SET parked_at = NULL, next_attempt_at = NULL, publish_attempts = 0
    WHERE id = :row_id AND parked_at IS NOT NULL AND published_at IS NULL
    RETURNING id
    """
)


async def retry_parked(session: AsyncSession, row_id: int) -> bool | None:
    """Give a parked row a fresh start (the relay publishes it on its next tick).

    Returns True when the row was parked and is now due, False when it exists but is not
    parked (published, or still in the relay's hands: nothing to do), None when missing."""
    if await session.scalar(_UNPARK, {"row_id": row_id}) is not None:
        return True
    exists = await session.scalar(select(OutboxRow.id).where(OutboxRow.id == row_id))
    return None if exists is None else False
