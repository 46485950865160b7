"""Small aiokafka helpers for operator commands (no consumer group, no commits).

Tansu's ListOffsets answer is not trusted through `end_offsets()`; `seek_to_end()`
followed by `position()` resolves the same offsets through the fetch path, which is what
the consumer will actually use.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from nexus.config import Settings
from runtime.kafka import client_options, new_consumer


def build_consumer(settings: Settings, *, timeout_s: float = 10.0) -> AIOKafkaConsumer:
    """A group-less consumer of the configured broker, with its security options."""
    return new_consumer(
        settings.kafka_bootstrap, timeout_seconds=timeout_s, options=client_options(settings)
    )


async def open_consumer(settings: Settings, *, timeout_s: float = 10.0) -> AIOKafkaConsumer:
    consumer = build_consumer(settings, timeout_s=timeout_s)
    await asyncio.wait_for(consumer.start(), timeout_s)
    return consumer


async def partitions_of(
    consumer: AIOKafkaConsumer, topic: str, *, timeout_s: float = 10.0
) -> list[TopicPartition]:
    """All partitions of `topic`; LookupError if the topic does not exist (yet)."""
    deadline = time.monotonic() + timeout_s
    while True:
        await consumer.topics()  # fetches fresh cluster metadata
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return [TopicPartition(topic, p) for p in sorted(parts)]
        if time.monotonic() > deadline:
            raise LookupError(f"topic {topic} not found")
        await asyncio.sleep(0.2)


async def assign_at_end(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """Assign `tps` positioned at their current end; returns those end offsets."""
    consumer.assign(tps)
    await consumer.seek_to_end(*tps)
    return {tp: await consumer.position(tp) for tp in tps}
