"""SPEC §10 "Outbox": a row the broker can never take is parked while every row written
after it is delivered (real broker, real aiokafka publisher, real database)."""

from __future__ import annotations

import json
import time

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nexus.db.tx import transaction
from nexus.jobs import outbox, relay
from nexus.messaging.messages import DomainEvent
from nexus.messaging.publisher import MessageRejected
from nexus.messaging.topics import TopicSpec
from runtime.kafka import KafkaPublisher, ensure_topics
from tests.support.kafka import from_the_start
from tests.support.services import Broker

ROWS_AFTER = 1000


def _event(n: int, padding: str = "") -> DomainEvent:
    return DomainEvent(
        event="test", entity_id=f"e{n}", request_id="r", correlation_id="c", data={"pad": padding}
    )


async def _count_messages(bootstrap: str, topic: str, want: int, deadline_s: float) -> set[str]:
    seen: set[str] = set()
    async with from_the_start(bootstrap, topic, fetch_max_wait_ms=100) as consumer:
        deadline = time.monotonic() + deadline_s
        while len(seen) < want and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=500)
            for records in batch.values():
                seen.update(json.loads(r.value)["entity_id"] for r in records)
    return seen


async def test_an_unpublishable_row_is_parked_and_a_thousand_later_rows_are_delivered(
    broker: Broker, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    topic = f"parking-{time.monotonic_ns()}"
    await ensure_topics(broker.bootstrap, [TopicSpec(topic, 2, 1)])
    async with transaction(sessionmaker) as s:
        # Larger than the broker accepts (its 1 MiB default request limit).
        huge = await outbox.enqueue(s, topic, "k", _event(0, padding="x" * 2_000_000))
        for n in range(1, ROWS_AFTER + 1):
            await outbox.enqueue(s, topic, f"k{n % 7}", _event(n))
    publisher = KafkaPublisher(broker.bootstrap, timeout_seconds=10.0)
    policy = relay.RetryPolicy(max_attempts=3, base_seconds=0.05, max_seconds=0.2)
    try:
        # The refusal is the message's own: the publisher is not put in its cool-down.
        try:
            await publisher.publish(topic, "k", b"x" * 2_000_000, {})
        except MessageRejected:
            pass
        else:  # pragma: no cover - the broker accepted 2 MB
            raise AssertionError("a 2 MB message was accepted")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            report = await relay.relay_once(
                sessionmaker, publisher, older_than_seconds=0, batch=200, policy=policy
            )
            assert not report.broker_down
            async with sessionmaker() as s:
                stats = await relay.stats(s)
            if stats.unpublished == 0:
                break
        async with sessionmaker() as s:
            parked = (
                await s.execute(
                    text("SELECT publish_attempts, parked_at FROM outbox WHERE id = :row_id"),
                    {"row_id": huge},
                )
            ).one()
            stats = await relay.stats(s)
    finally:
        await publisher.close()
    assert (stats.unpublished, stats.parked) == (0, 1)
    assert parked.parked_at is not None and parked.publish_attempts == policy.max_attempts
    seen = await _count_messages(broker.bootstrap, topic, ROWS_AFTER, deadline_s=60)
    assert seen == {f"e{n}" for n in range(1, ROWS_AFTER + 1)}
