"""Transactional outbox: rows written with the state they announce, published after commit.

`enqueue` runs inside the caller's transaction and remembers the row id on the session, so
the entry point can publish exactly those rows right after commit (`publish_rows`). Rows
that were not published then (broker down, process died) are picked up by the relay
(`relay_once`), which the agents' leader runs on a timer. Publishing is at-least-once:
consumers treat messages as wake-up calls and the job rows decide.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.jobs.models import OutboxRow
from nexus.messaging.messages import Message
from nexus.messaging.publisher import Publisher, PublishError

_PENDING_IDS = "nexus.outbox_ids"


async def enqueue(session: AsyncSession, topic: str, key: str | None, message: Message) -> int:
    """Write one outbox row in the current transaction; returns its id."""
    row_id = await session.scalar(
        insert(OutboxRow)
        .values(
            topic=topic,
            key=key,
            payload=json.loads(message.model_dump_json()),
            headers=message.trace_headers(),
        )
        .returning(OutboxRow.id)
    )
    assert row_id is not None
    session.info.setdefault(_PENDING_IDS, []).append(row_id)
    return int(row_id)


def enqueued_ids(session: AsyncSession) -> list[int]:
    """Ids of the outbox rows this session wrote (publish them after commit)."""
    return list(session.info.get(_PENDING_IDS, []))


@dataclass(frozen=True)
class PublishReport:
    published: int
    failed: int

    @property
    def all_published(self) -> bool:
        return self.failed == 0


async def _publish_locked(
    session: AsyncSession, publisher: Publisher, rows: Sequence[OutboxRow]
) -> PublishReport:
    published: list[int] = []
    failed = 0
    for row in rows:
        try:
            await publisher.publish(
                row.topic,
                row.key,
                json.dumps(row.payload, separators=(",", ":")).encode(),
                {k: str(v) for k, v in (row.headers or {}).items()},
            )
        except PublishError as exc:
            await session.execute(
                update(OutboxRow)
                .where(OutboxRow.id == row.id)
                .values(
                    publish_attempts=OutboxRow.publish_attempts + 1,
                    last_error=str(exc)[:1000],
                )
            )
            # Keep order per key: once one row fails, later rows wait for the relay.
            failed = len(rows) - len(published)
            break
        published.append(row.id)
    if published:
        await session.execute(
            update(OutboxRow)
            .where(OutboxRow.id.in_(published))
            .values(published_at=func.now(), publish_attempts=OutboxRow.publish_attempts + 1)
        )
    return PublishReport(published=len(published), failed=failed)


async def publish_rows(
    sessionmaker: async_sessionmaker[AsyncSession], publisher: Publisher, ids: Sequence[int]
) -> PublishReport:
    """Publish the given rows now (skipping any another process holds) and mark them."""
    if not ids:
        return PublishReport(0, 0)
    async with sessionmaker() as session, session.begin():
        rows = (
            await session.scalars(
                select(OutboxRow)
                .where(OutboxRow.id.in_(list(ids)), OutboxRow.published_at.is_(None))
                .order_by(OutboxRow.id)
                .with_for_update(skip_locked=True)
            )
        ).all()
        return await _publish_locked(session, publisher, rows)


async def relay_once(
    sessionmaker: async_sessionmaker[AsyncSession],
    publisher: Publisher,
    *,
    older_than_seconds: float,
    batch: int,
) -> PublishReport:
    """Publish rows left unpublished for longer than `older_than_seconds`, in id order."""
    async with sessionmaker() as session, session.begin():
        rows = (
            await session.scalars(
                select(OutboxRow)
                .where(
                    OutboxRow.published_at.is_(None),
                    OutboxRow.created_at
                    < func.now()
                    - text("make_interval(secs => :age)").bindparams(age=older_than_seconds),
                )
                .order_by(OutboxRow.id)
                .limit(batch)
                .with_for_update(skip_locked=True)
            )
        ).all()
        return await _publish_locked(session, publisher, rows)


@dataclass(frozen=True)
class OutboxStats:
    unpublished: int
    oldest_unpublished_at: datetime | None
    oldest_age_seconds: float | None


async def stats(session: AsyncSession) -> OutboxStats:
    row = (
        await session.execute(
            select(
                func.count(),
                func.min(OutboxRow.created_at),
                func.extract("epoch", func.now() - func.min(OutboxRow.created_at)),
            ).where(OutboxRow.published_at.is_(None))
        )
    ).one()
    age = float(row[2]) if row[2] is not None else None
    return OutboxStats(
        unpublished=int(row[0]), oldest_unpublished_at=row[1], oldest_age_seconds=age
    )
