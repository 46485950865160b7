"""`nexus ops replay-dead-letter`: re-produce dead-lettered values to their original topic,
reading the dead-letter TOPIC (letters of any shape, pre-0014 ones included). The audited
tool that reads the `dead_letters` table and replays through the outbox is
`nexus ops dead-letter replay` (cli/ops/dead_letters.py); this one remains for letters
that only the topic holds.

Reads the dead-letter topic (one partition) without a consumer group from `--from-offset`
up to the end offset taken at start (letters produced while replaying are not re-read),
and produces each letter's original key and value to its original topic with a
`replayed_from` header. Only this deployment's work topics (ingest, backfill,
backfill-requeue, operations) are ever produced to: a letter naming any other topic is refused (the
dead-letter topic's content is not trusted to choose where we write), and so is a
`--topic` that is not one of them (exit status 2). Prints one JSON line per letter and a
summary line with the next offset to continue from. Replaying is safe: work messages only
name jobs whose guarded rows decide, and requeue messages are de-duplicated by message_id;
a value that is still invalid simply dead-letters again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, SubParsers, err, out, run_service
from cli.ops.broker import assign_at_end, open_consumer, partitions_of
from nexus.config import Settings
from nexus.messaging.messages import DeadLetter
from nexus.messaging.publisher import PublishError
from nexus.messaging.topics import Topics
from runtime.kafka import KafkaPublisher


def register(subparsers: SubParsers) -> None:
    p = subparsers.add_parser(
        "replay-dead-letter", help="re-produce dead-lettered messages to their original topic"
    )
    p.add_argument("--topic", help="only letters from this topic (full name or e.g. 'backfill')")
    p.add_argument("--limit", type=int, default=None, help="replay at most N letters")
    p.add_argument("--from-offset", type=int, default=0, help="dead-letter offset to start at")
    p.add_argument("--dry-run", action="store_true", help="print what would be replayed")
    p.set_defaults(handler=run_replay)


def resolve_topic(name: str | None, topics: Topics) -> str | None:
    if name is None:
        return None
    known = {spec.name for spec in topics.specs()}
    prefixed = f"{topics.events.removesuffix('events')}{name}"
    return name if name in known or prefixed not in known else prefixed


class RefusedTopic(ValueError):
    """A replay target that is not one of this deployment's work topics."""


def check_target(topic: str, topics: Topics) -> str:
    """`topic` when it is one of our work topics; `RefusedTopic` otherwise."""
    if topic not in topics.work():
        raise RefusedTopic(
            f"refusing to produce to {topic!r}: replay only targets the work topics "
            f"{', '.join(topics.work())}"
        )
    return topic


async def _letters(
    consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int
) -> list[tuple[int, dict[str, Any]]]:
    consumer.seek(tp, start)
    found: list[tuple[int, dict[str, Any]]] = []
    while await consumer.position(tp) < end:
        batch = await consumer.getmany(tp, timeout_ms=1000)
        for record in batch.get(tp, []):
            if record.offset >= end:
                return found
            try:
                found.append((record.offset, json.loads(record.value)))
            except (TypeError, ValueError):
                found.append((record.offset, {}))
    return found


async def replay(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    topics = Topics.from_settings(settings)
    only = resolve_topic(args.topic, topics)
    consumer = await open_consumer(settings)
    publisher = KafkaPublisher.from_settings(settings, timeout_seconds=10.0)
    replayed = skipped = refused = 0
    next_offset = args.from_offset
    try:
        tps = await partitions_of(consumer, topics.dead_letter)
        ends = await assign_at_end(consumer, tps)
        for tp in tps:
            for offset, letter in await _letters(consumer, tp, args.from_offset, ends[tp]):
                if args.limit is not None and replayed >= args.limit:
                    return {
                        "replayed": replayed,
                        "skipped": skipped,
                        "refused": refused,
                        "next_offset": offset,
                    }
                next_offset = offset + 1
                try:
                    parsed = DeadLetter.model_validate(letter)
                    topic, value = parsed.original_topic, parsed.raw_value()
                except ValueError:  # pydantic's ValidationError, bad base64
                    skipped += 1
                    continue
                if only and topic != only:
                    skipped += 1
                    continue
                try:
                    check_target(str(topic), topics)
                except RefusedTopic as exc:
                    err(f"offset {offset}: {exc}")
                    refused += 1
                    continue
                line = {
                    "offset": offset,
                    "topic": topic,
                    "key": parsed.key,
                    "reason": parsed.error_message,
                    "dry_run": bool(args.dry_run),
                }
                if not args.dry_run:
                    await publisher.publish(
                        topic,
                        parsed.key,
                        value,
                        {"replayed_from": f"{tp.topic}:{tp.partition}:{offset}"},
                    )
                out(json.dumps(line))
                replayed += 1
    finally:
        await publisher.close()
        await asyncio.wait_for(consumer.stop(), 10)
    return {
        "replayed": replayed,
        "skipped": skipped,
        "refused": refused,
        "next_offset": next_offset,
    }


def run_replay(args: argparse.Namespace, settings: Settings) -> int:
    """Exit status: 0 done, 1 broker failure or some letter refused, 2 a refused --topic."""
    topics = Topics.from_settings(settings)
    only = resolve_topic(args.topic, topics)
    if only is not None:
        try:
            check_target(only, topics)
        except RefusedTopic as exc:
            err(f"error: {exc}")
            return EXIT_USAGE
    try:
        summary = run_service(lambda: replay(settings, args))
    except (PublishError, LookupError, OSError, TimeoutError) as exc:
        err(f"error: broker: {exc}")
        return EXIT_FAILURE
    verb = "would replay" if args.dry_run else "replayed"
    out(json.dumps({"summary": verb, **summary}))
    return EXIT_FAILURE if summary["refused"] else EXIT_OK
