"""The aiokafka Publisher against a real broker, a dead one and a hung one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from nexus.messaging.publisher import PublishError
from nexus.messaging.topics import TopicSpec
from runtime.kafka import KafkaPublisher, ensure_topics
from tests.support.kafka import read_until
from tests.support.services import Broker, broker_ready, free_port


@pytest_asyncio.fixture
async def hung_broker() -> AsyncIterator[str]:
    """A TCP server that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()


async def test_a_hung_broker_costs_one_timeout_not_one_per_caller(hung_broker: str) -> None:
    pub = KafkaPublisher(hung_broker, timeout_seconds=1.0, cooldown_seconds=5.0)
    try:
        started = time.monotonic()
        results = await asyncio.gather(
            *(pub.publish("t", "k", b"v", {}) for _ in range(10)), return_exceptions=True
        )
        elapsed = time.monotonic() - started
        assert all(isinstance(r, PublishError) for r in results)
        # Ten callers share one start attempt: far below ten sequential timeouts.
        assert elapsed < 3.0
        started = time.monotonic()
        with pytest.raises(PublishError, match="cooling down"):
            await pub.publish("t", "k", b"v", {})
        assert time.monotonic() - started < 0.5
    finally:
        await pub.close()


async def test_publisher_recovers_when_the_broker_returns(logs_dir: Path) -> None:
    own = Broker(port=free_port(), log_path=logs_dir / "broker.log")
    own.start()
    pub = KafkaPublisher(own.bootstrap, timeout_seconds=1.0, cooldown_seconds=0.2)
    try:
        await broker_ready(own.bootstrap)
        await ensure_topics(own.bootstrap, [TopicSpec("pub.test", 1)])
        await pub.publish("pub.test", "k", b'{"n": 1}', {"h": "1"})
        own.stop()
        with pytest.raises(PublishError):
            await pub.publish("pub.test", "k", b'{"n": 2}', {})
        own.start()
        await broker_ready(own.bootstrap)
        await ensure_topics(own.bootstrap, [TopicSpec("pub.test", 1)])
        deadline = time.monotonic() + 20
        while True:
            try:
                await pub.publish("pub.test", "k", b'{"n": 3}', {})
                break
            except PublishError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        got = await read_until(own.bootstrap, "pub.test", lambda v: v.get("n") == 3)
        assert got == {"n": 3}
    finally:
        await pub.close()
        own.stop()


async def test_warm_up_starts_the_producer_and_never_raises(broker: Broker) -> None:
    dead = KafkaPublisher(f"127.0.0.1:{free_port()}", timeout_seconds=1.0)
    try:
        assert await dead.warm_up(["t"]) is False  # nobody listens: stays lazy, no error
    finally:
        await dead.close()
    topic = f"warm-{free_port()}"
    await ensure_topics(broker.bootstrap, [TopicSpec(topic, 1)])
    pub = KafkaPublisher(broker.bootstrap, timeout_seconds=5.0)
    try:
        assert await pub.warm_up([topic]) is True
        started = pub._producer
        assert started is not None
        await pub.publish(topic, "k", b'{"n": 1}', {})
        assert pub._producer is started  # the first publish used the warm producer
        assert await read_until(broker.bootstrap, topic, lambda v: v == {"n": 1})
    finally:
        await pub.close()
