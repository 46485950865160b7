"""Broker helpers for tests: produce raw messages, read a topic until a predicate holds."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def produce(bootstrap: str, topic: str, value: bytes, key: bytes | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()


async def read_until(
    bootstrap: str,
    topic: str,
    predicate: Callable[[dict[str, Any]], bool],
    *,
    deadline_s: float = 30.0,
) -> dict[str, Any]:
    """Read `topic` from the beginning until a JSON value satisfies `predicate`."""
    seen: list[dict[str, Any]] = []
    async with from_the_start(bootstrap, topic) as consumer:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    value = json.loads(record.value)
                    seen.append(value)
                    if predicate(value):
                        return value
            await asyncio.sleep(0)
        raise TimeoutError(f"no matching message on {topic}; saw {seen[-5:]}")


@asynccontextmanager
async def from_the_start(
    bootstrap: str, topic: str, **options: Any
) -> AsyncIterator[AIOKafkaConsumer]:
    """A started consumer of `topic` from its first message, in no group (nothing
    committed); `options` go to AIOKafkaConsumer."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        **options,
    )
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()
