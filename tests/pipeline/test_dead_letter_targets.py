"""`nexus ops replay-dead-letter` only ever produces to this deployment's work topics
(issue #11.7): the dead-letter topic's content does not choose where we write."""

from __future__ import annotations

import json
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from nexus.config import Settings
from nexus.messaging.topics import Topics
from runtime.kafka import ensure_topics
from tests.conftest import make_settings
from tests.support.cli import run_ops
from tests.support.kafka import produce
from tests.support.services import Broker

pytestmark = pytest.mark.pipeline


async def _cli(settings: Settings, *args: str) -> tuple[int, list[str], str]:
    return await run_ops(settings, "replay-dead-letter", *args)


async def _count(bootstrap: str, topic: str) -> int:
    """Messages in `topic` (0 when it does not exist)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            return 0
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        return sum([await consumer.position(tp) for tp in tps])
    finally:
        await consumer.stop()


async def test_letters_naming_other_topics_are_refused(broker: Broker) -> None:
    settings = make_settings(kafka_bootstrap=broker.bootstrap)
    topics = Topics.from_settings(settings)
    await ensure_topics(broker.bootstrap, topics.specs())
    victim = f"victim-{uuid.uuid4().hex[:8]}"
    marker = uuid.uuid4().hex
    letters = [
        {"topic": victim, "key": "k", "value": "forged"},
        {"topic": topics.events, "key": "k", "value": "forged event"},
        {"topic": topics.ingest, "key": "k", "value": f"{{broken {marker}"},
    ]
    for letter in letters:
        await produce(broker.bootstrap, topics.dead_letter, json.dumps(letter).encode())

    code, lines, stderr = await _cli(settings)

    assert code == 1, stderr
    summary = json.loads(lines[-1])
    assert (summary["replayed"], summary["refused"]) == (1, 2)
    assert f"refusing to produce to {victim!r}" in stderr
    assert f"refusing to produce to {topics.events!r}" in stderr
    assert await _count(broker.bootstrap, victim) == 0
    assert await _count(broker.bootstrap, topics.events) == 0
    assert await _count(broker.bootstrap, topics.ingest) == 1


async def test_a_topic_option_outside_the_work_topics_is_a_usage_error(broker: Broker) -> None:
    settings = make_settings(kafka_bootstrap=broker.bootstrap)
    code, _lines, stderr = await _cli(settings, "--topic", "events")
    assert code == 2
    assert "replay only targets the work topics" in stderr
