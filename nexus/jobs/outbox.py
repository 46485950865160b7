"""Transactional outbox: rows written with the state they announce, published after commit.

`enqueue` runs inside the caller's transaction and remembers the row id on the session, so
the entry point can publish exactly those rows right after commit (`publish_rows`). Rows
that were not published then (broker down, process died) are picked up by the relay
(`nexus.jobs.relay`), which the agents' leader runs on a timer. Publishing is at-least-once:
consumers treat messages as wake-up calls and the job rows decide.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus import tracing
from nexus.db.tx import autocommit
from nexus.jobs import relay
from nexus.jobs.models import OutboxRow
from nexus.jobs.relay import PublishReport, RetryPolicy
from nexus.messaging.messages import Message
from nexus.messaging.publisher import Publisher, PublishError

log = logging.getLogger(__name__)

_PENDING = "nexus.outbox_pending"

_INSERT = text(
    "INSERT INTO outbox (topic, key, payload, headers) "
    "VALUES (:t, :k, CAST(:p AS jsonb), CAST(:h AS jsonb)) RETURNING id"
)


@dataclass(frozen=True)
class Enqueued:
    """An outbox row as written, kept on the session so it can be published after commit
    without reading it back."""

    id: int
    topic: str
    key: str | None
    value: bytes
    headers: dict[str, str]


async def enqueue(session: AsyncSession, topic: str, key: str | None, message: Message) -> int:
    """Write one outbox row in the current transaction; returns its id."""
    value = message.model_dump_json()
    headers = row_headers(message)
    row_id = await session.scalar(
        _INSERT, {"t": topic, "k": key, "p": value, "h": json.dumps(headers)}
    )
    assert row_id is not None
    return remember(session, int(row_id), topic, key, message, value)


async def enqueue_raw(
    session: AsyncSession, topic: str, key: str | None, value: bytes, headers: dict[str, str]
) -> int:
    """Write one outbox row for an already serialised JSON document `value` (a replayed
    message, whose bytes are not ours to re-encode) in the current transaction; published
    after commit with exactly these bytes (the relay, if it has to, sends the same JSON
    re-serialised). Raises ValueError if `value` is not JSON the `payload` column holds."""
    text_value = value.decode("utf-8")
    json.loads(text_value)
    if "\\u0000" in text_value:
        raise ValueError("JSON with NUL characters cannot be stored")
    row_id = await session.scalar(
        _INSERT, {"t": topic, "k": key, "p": text_value, "h": json.dumps(headers)}
    )
    assert row_id is not None
    entry = Enqueued(int(row_id), topic, key, value, dict(headers))
    session.info.setdefault(_PENDING, []).append(entry)
    return entry.id


def row_headers(message: Message) -> dict[str, str]:
    """The headers stored with a row (sent as Kafka headers): the message's ids and the
    trace context current where the row is written (`traceparent`, when tracing)."""
    return tracing.inject(message.trace_headers())


def remember(
    session: AsyncSession,
    row_id: int,
    topic: str,
    key: str | None,
    message: Message,
    value: str | None = None,
) -> int:
    """Keep a row this transaction wrote (by `enqueue`, or by an `insert_cte` of a bigger
    statement) on the session, to be published after commit."""
    value = message.model_dump_json() if value is None else value
    headers = row_headers(message)
    entry = Enqueued(row_id, topic, key, value.encode(), headers)
    session.info.setdefault(_PENDING, []).append(entry)
    return entry.id


def insert_cte(name: str, *, when: str) -> str:
    """An outbox row as one `name AS (INSERT ... RETURNING id)` item of a bigger statement's
    WITH list (a job machine `Rider`, the API's from_url), written only when the SQL
    condition `when` holds; its parameters come from `insert_params(name, ...)`. The row
    is published by the relay, or right after commit once `remember`ed on the session."""
    p = f"r_{name}_"
    return (
        f"{name} AS (INSERT INTO outbox (topic, key, payload, headers) "
        f"SELECT :{p}t, :{p}k, CAST(:{p}p AS jsonb), CAST(:{p}h AS jsonb) WHERE {when} "
        "RETURNING id)"
    )


def insert_params(
    name: str, topic: str, key: str | None, message: Message, value: str | None = None
) -> dict[str, Any]:
    """Parameters of `insert_cte(name)`; `value` is the message's JSON when the caller has
    it already (to `remember` the row too)."""
    p = f"r_{name}_"
    return {
        f"{p}t": topic,
        f"{p}k": key,
        f"{p}p": message.model_dump_json() if value is None else value,
        f"{p}h": json.dumps(row_headers(message)),
    }


def enqueued(session: AsyncSession) -> list[Enqueued]:
    """The outbox rows this session wrote, in order (publish them after commit)."""
    return list(session.info.get(_PENDING, []))


def enqueued_ids(session: AsyncSession) -> list[int]:
    """Ids of the outbox rows this session wrote."""
    return [entry.id for entry in enqueued(session)]


async def publish_rows(
    sessionmaker: async_sessionmaker[AsyncSession],
    publisher: Publisher,
    ids: Sequence[int],
    policy: RetryPolicy | None = None,
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
        return await relay.publish_locked(session, publisher, rows, policy or RetryPolicy())


async def publish_enqueued(
    sessionmaker: async_sessionmaker[AsyncSession],
    publisher: Publisher,
    entries: Sequence[Enqueued],
    marks: PublishedMarks | None = None,
) -> PublishReport:
    """Publish rows this process just committed, from memory, then mark them: through
    `marks` (batched with other requests' rows) when given, else in ONE autocommit
    statement (the request/consumer path; `publish_rows` reads rows back).

    No row lock is taken: the relay only touches rows older than its threshold, and if it
    publishes one of these too (this path took longer than that), the message goes out
    twice, which at-least-once consumers already absorb.
    """
    published: list[int] = []
    failure: tuple[int, str] | None = None
    for entry in entries:
        try:
            with tracing.publish_span(entry.topic):
                headers = tracing.inject(dict(entry.headers))
                await publisher.publish(entry.topic, entry.key, entry.value, headers)
        except PublishError as exc:
            # Keep order per key: once one row fails, later rows wait for the relay.
            failure = (entry.id, str(exc)[:1000])
            break
        published.append(entry.id)
    if marks is not None and failure is None:
        marks.add(published)
    elif published or failure is not None:
        async with autocommit(sessionmaker) as conn:
            await conn.execute(
                _MARK,
                {
                    "ok": published,
                    "failed": failure[0] if failure else None,
                    "error": failure[1] if failure else None,
                },
            )
    return PublishReport(published=len(published), failed=len(entries) - len(published))


class PublishedMarks:
    """Marks published rows in batches: one `UPDATE` for every row this process published
    in the last `delay` seconds, instead of one per request.

    A mark only stops the relay from publishing the row again, so losing one (the process
    died before the flush, the database did not answer) costs a duplicate message after
    `outbox_relay_after_seconds`, which at-least-once consumers absorb. `delay` must stay
    well under that threshold. Use from one event loop; `close()` flushes what is pending.
    """

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], *, delay: float = 0.05
    ) -> None:
        self._sessionmaker = sessionmaker
        self.delay = delay
        self._ids: list[int] = []
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()

    def add(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        self._ids.extend(ids)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.delay, self._start_flush)

    def _start_flush(self) -> None:
        self._timer = None
        task = asyncio.get_running_loop().create_task(self.flush())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def flush(self) -> None:
        ids, self._ids = self._ids, []
        if not ids:
            return
        try:
            async with autocommit(self._sessionmaker) as conn:
                await conn.execute(_MARK, {"ok": ids, "failed": None, "error": None})
        except Exception as exc:
            log.warning("outbox marks lost (the relay will publish again): %s", exc)

    async def close(self) -> None:
        """Flush what is pending and wait for flushes in progress (before the engine goes)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
        await self.flush()


_MARK = text(
    """
    UPDATE outbox SET publish_attempts = publish_attempts + 1,
        published_at = CASE WHEN id = ANY(CAST(:ok AS bigint[])) THEN now() END,
        last_error = CASE WHEN id = ANY(CAST(:ok AS bigint[])) THEN last_error ELSE :error END
    WHERE (id = ANY(CAST(:ok AS bigint[])) OR id = :failed) AND published_at IS NULL
    """
)
