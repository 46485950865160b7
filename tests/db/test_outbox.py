"""The transactional outbox on the real database, with a recording publisher."""

from __future__ import annotations

import asyncio
import json

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.db.tx import transaction
from nexus.jobs import outbox, relay
from nexus.messaging.messages import DomainEvent
from nexus.messaging.publisher import MessageRejected, PublishError
from tests.support.db import one
from tests.support.processes import poll


class RecordingPublisher:
    """Records what it publishes. Fails as a broker does: down once it took `fail_after`
    messages, or refusing the messages of entity `refuse` (as a too-large message)."""

    def __init__(
        self, fail_after: int | None = None, delay: float = 0.0, refuse: str | None = None
    ) -> None:
        self.sent: list[tuple[str, str | None, dict, dict[str, str]]] = []
        self.fail_after = fail_after
        self.delay = delay
        self.refuse = refuse

    async def publish(
        self, topic: str, key: str | None, value: bytes, headers: dict[str, str]
    ) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise PublishError("broker down")
        if self.refuse is not None and json.loads(value)["entity_id"] == self.refuse:
            raise MessageRejected("refused: MessageSizeTooLargeError")
        self.sent.append((topic, key, json.loads(value), headers))

    async def ping(self) -> bool:
        return True


def _event(n: int) -> DomainEvent:
    return DomainEvent(event="test", entity_id=f"e{n}", request_id=f"r{n}", correlation_id="c")


async def _enqueued(
    sm: async_sessionmaker[AsyncSession], n: int, key: str | None = "k"
) -> list[int]:
    """Events e0..e(n-1) enqueued on "t.events" in one transaction, all with message key
    `key` (None: each its own, k0..); their row ids."""
    async with transaction(sm) as s:
        for i in range(n):
            await outbox.enqueue(s, "t.events", key or f"k{i}", _event(i))
        return outbox.enqueued_ids(s)


async def _unpublished(sm: async_sessionmaker[AsyncSession]) -> list[int]:
    async with sm() as s:
        rows = await s.execute(text("SELECT id FROM outbox WHERE published_at IS NULL ORDER BY id"))
        return [r[0] for r in rows]


async def test_rows_are_written_in_the_callers_transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    try:
        async with transaction(sessionmaker) as s:
            await outbox.enqueue(s, "t.events", "k", _event(1))
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    async with sessionmaker() as s:
        assert await s.scalar(text("SELECT count(*) FROM outbox")) == 0


async def test_publish_after_commit_marks_rows_and_keeps_trace_headers(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with transaction(sessionmaker) as s:
        a = await outbox.enqueue(s, "t.events", "k1", _event(1))
        b = await outbox.enqueue(s, "t.events", "k2", _event(2))
        ids = outbox.enqueued_ids(s)
    assert ids == [a, b]
    pub = RecordingPublisher()
    report = await outbox.publish_rows(sessionmaker, pub, ids)
    assert report.all_published and report.published == 2
    assert [(t, k) for t, k, _, _ in pub.sent] == [("t.events", "k1"), ("t.events", "k2")]
    assert pub.sent[0][2]["request_id"] == "r1"
    assert pub.sent[0][3]["correlation_id"] == "c" and pub.sent[0][3]["message_type"]
    assert await _unpublished(sessionmaker) == []
    # Publishing again is a no-op: the rows are already marked.
    assert (await outbox.publish_rows(sessionmaker, pub, ids)).published == 0


async def test_failed_publish_leaves_rows_for_the_relay_in_order(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ids = await _enqueued(sessionmaker, 3)
    report = await outbox.publish_rows(sessionmaker, RecordingPublisher(fail_after=1), ids)
    assert (report.published, report.failed) == (1, 2)
    assert await _unpublished(sessionmaker) == ids[1:]
    async with sessionmaker() as s:
        err = (
            await s.execute(
                text("SELECT publish_attempts, last_error FROM outbox WHERE id=:i"), {"i": ids[1]}
            )
        ).one()
    assert err.publish_attempts == 1 and "broker down" in err.last_error
    # The relay only takes rows older than its threshold...
    pub = RecordingPublisher()
    young = await relay.relay_once(sessionmaker, pub, older_than_seconds=3600, batch=10)
    assert young.published == 0
    relayed = await relay.relay_once(sessionmaker, pub, older_than_seconds=0, batch=10)
    assert relayed.published == 2
    assert [v["entity_id"] for _, _, v, _ in pub.sent] == ["e1", "e2"]
    assert await _unpublished(sessionmaker) == []


async def test_concurrent_relays_never_publish_a_row_twice(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await _enqueued(sessionmaker, 40, key=None)
    pubs = [RecordingPublisher(delay=0.001) for _ in range(3)]
    await asyncio.gather(
        *(relay.relay_once(sessionmaker, p, older_than_seconds=0, batch=15) for p in pubs),
        *(relay.relay_once(sessionmaker, p, older_than_seconds=0, batch=15) for p in pubs),
    )
    sent = [v["entity_id"] for p in pubs for _, _, v, _ in p.sent]
    assert len(sent) == len(set(sent)) == 40


async def test_stats_report_backlog(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with transaction(sessionmaker) as s:
        await outbox.enqueue(s, "t.events", "k", _event(1))
    async with sessionmaker() as s:
        st = await relay.stats(s)
    assert st.unpublished == 1 and st.oldest_age_seconds is not None and st.oldest_age_seconds >= 0


async def _write(
    sm: async_sessionmaker[AsyncSession], n: int, start: int = 0
) -> list[outbox.Enqueued]:
    async with transaction(sm) as s:
        for i in range(start, start + n):
            await outbox.enqueue(s, "t.events", f"k{i}", _event(i))
        return outbox.enqueued(s)


async def test_batched_marks_cover_several_publishes_and_flush_on_close(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    marks = outbox.PublishedMarks(sessionmaker, delay=0.05)
    publisher = RecordingPublisher()
    first, second = await _write(sessionmaker, 2), await _write(sessionmaker, 3, start=2)
    for rows in (first, second):
        report = await outbox.publish_enqueued(sessionmaker, publisher, rows, marks)
        assert report.all_published
    # Published at once, marked a moment later, together.
    assert len(publisher.sent) == 5
    assert len(await _unpublished(sessionmaker)) == 5

    async def all_marked() -> bool:
        return not await _unpublished(sessionmaker)

    await poll(all_marked, deadline_s=2, interval=0.01, what="batched marks")
    # What is still pending at close is flushed, not lost.
    slow = outbox.PublishedMarks(sessionmaker, delay=60)
    third = await _write(sessionmaker, 2, start=5)
    await outbox.publish_enqueued(sessionmaker, publisher, third, slow)
    assert len(await _unpublished(sessionmaker)) == 2
    await slow.close()
    assert await _unpublished(sessionmaker) == []
    await marks.close()


async def test_a_publish_failure_is_recorded_at_once_even_with_batched_marks(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    marks = outbox.PublishedMarks(sessionmaker, delay=60)
    rows = await _write(sessionmaker, 3)
    report = await outbox.publish_enqueued(
        sessionmaker, RecordingPublisher(fail_after=1), rows, marks
    )
    assert (report.published, report.failed) == (1, 2)
    async with sessionmaker() as s:
        attempts = (
            await s.execute(text("SELECT publish_attempts, last_error FROM outbox ORDER BY id"))
        ).all()
    assert [a[0] for a in attempts] == [1, 1, 0]  # the published one and the failed one
    assert attempts[1][1] == "broker down"
    assert await _unpublished(sessionmaker) == [r.id for r in rows[1:]]
    await marks.close()


FAST = relay.RetryPolicy(max_attempts=3, base_seconds=0.01, max_seconds=0.05)


async def _row(sm: async_sessionmaker[AsyncSession], row_id: int) -> dict:
    found = await one(
        sm,
        "SELECT publish_attempts, last_error, next_attempt_at, parked_at, published_at "
        "FROM outbox WHERE id = :row_id",
        row_id=row_id,
    )
    return dict(found._mapping)


async def test_a_refused_row_backs_off_then_parks_without_blocking_later_rows(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ids = await _enqueued(sessionmaker, 5, key="same-key")
    pub = RecordingPublisher(refuse="e1")
    first = await relay.relay_once(sessionmaker, pub, older_than_seconds=0, batch=10, policy=FAST)
    # Every other row went out in the same tick, the refused one is charged and backs off.
    assert (first.published, first.failed, first.parked) == (4, 1, 0)
    assert [v["entity_id"] for _, _, v, _ in pub.sent] == ["e0", "e2", "e3", "e4"]
    row = await _row(sessionmaker, ids[1])
    assert row["publish_attempts"] == 1 and "MessageSizeTooLarge" in row["last_error"]
    assert row["next_attempt_at"] is not None and row["parked_at"] is None

    async def parked() -> bool:
        await relay.relay_once(sessionmaker, pub, older_than_seconds=0, batch=10, policy=FAST)
        return (await _row(sessionmaker, ids[1]))["parked_at"] is not None

    await poll(parked, deadline_s=10, what="the refused row to park")
    row = await _row(sessionmaker, ids[1])
    assert row["publish_attempts"] == FAST.max_attempts and row["published_at"] is None
    async with sessionmaker() as s:
        st = await relay.stats(s)
        listed = await relay.list_rows(s, status="parked", limit=10)
    assert (st.unpublished, st.parked) == (0, 1)
    assert [item.id for item in listed] == [ids[1]]
    # A parked row is never tried again by the relay...
    again = await relay.relay_once(sessionmaker, pub, older_than_seconds=0, batch=10, policy=FAST)
    assert (again.published, again.failed) == (0, 0)


async def test_an_operator_retry_gives_a_parked_row_a_fresh_start(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with transaction(sessionmaker) as s:
        row_id = await outbox.enqueue(s, "t.events", "k", _event(7))
        other = await outbox.enqueue(s, "t.events", "k", _event(8))
    policy = relay.RetryPolicy(max_attempts=1)
    refusing = RecordingPublisher(refuse="e7")
    await relay.relay_once(sessionmaker, refusing, older_than_seconds=0, batch=10, policy=policy)
    assert (await _row(sessionmaker, row_id))["parked_at"] is not None
    async with transaction(sessionmaker) as s:
        assert await relay.retry_parked(s, row_id) is True
        assert await relay.retry_parked(s, other) is False  # published: nothing to do
        assert await relay.retry_parked(s, 10**12) is None
    fixed = RecordingPublisher()
    report = await relay.relay_once(sessionmaker, fixed, older_than_seconds=0, batch=10)
    assert report.published == 1 and fixed.sent[0][2]["entity_id"] == "e7"
    assert (await _row(sessionmaker, row_id))["published_at"] is not None


async def test_a_broker_outage_stops_the_tick_and_parks_nothing(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    ids = await _enqueued(sessionmaker, 3)
    down = RecordingPublisher(fail_after=0)
    policy = relay.RetryPolicy(max_attempts=1)
    for _ in range(3):
        report = await relay.relay_once(
            sessionmaker, down, older_than_seconds=0, batch=10, policy=policy
        )
        assert report.broker_down and (report.published, report.failed, report.parked) == (0, 3, 0)
    first = await _row(sessionmaker, ids[0])
    assert first["parked_at"] is None and first["next_attempt_at"] is None
    assert first["publish_attempts"] == 3 and "broker down" in first["last_error"]
    # The rows behind it were not tried while the broker was down, and all go out after.
    assert (await _row(sessionmaker, ids[1]))["publish_attempts"] == 0
    up = RecordingPublisher()
    report = await relay.relay_once(sessionmaker, up, older_than_seconds=0, batch=10)
    assert report.published == 3
    assert [v["entity_id"] for _, _, v, _ in up.sent] == ["e0", "e1", "e2"]


def test_backoff_doubles_up_to_its_cap() -> None:
    policy = relay.RetryPolicy(max_attempts=10, base_seconds=1.0, max_seconds=300.0)
    assert [policy.delay(n) for n in (1, 2, 3, 9, 10)] == [1.0, 2.0, 4.0, 256.0, 300.0]
