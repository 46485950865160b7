"""`nexus ops dead-letter list|show|replay`: the dead letters operators look after
(SPEC §10), read from the `dead_letters` table (so they survive a broker restart).

`replay` is the CLI twin of `POST /internal/dead-letters/replay`: the same selection
rules (oldest first, not yet replayed unless `--include-replayed`, only to this
deployment's work topics), through the outbox in one transaction with the replay marks
and one `operator_actions` row per letter (actor `cli:<user>`); the rows are published
right after commit (or by the agents' relay when the broker does not answer).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
from typing import Any

from cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    SubParsers,
    err,
    guarded,
    out,
    run_service,
    usage,
)
from cli.ops.db import session_scope
from cli.ops.output import add_list_options, cli_actor, fields, limit_ok, run_listing
from nexus.config import Settings
from nexus.db.engine import make_engine, make_sessionmaker
from nexus.db.tx import transaction
from nexus.deadletters import service as deadletters
from nexus.jobs import outbox
from nexus.messaging.topics import Topics
from runtime.kafka import KafkaPublisher

COLUMNS = (
    "id",
    "original_topic",
    "partition",
    "offset",
    "key",
    "error_code",
    "at",
    "replay_count",
)
MAX_LIMIT = 10_000


def register(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("dead-letter", help="list, show and replay dead letters")
    parser.set_defaults(handler=usage(parser))
    sub = parser.add_subparsers(title="dead-letter commands", metavar="COMMAND")

    listing = sub.add_parser("list", help="dead letters, newest first")
    _filters(listing)
    replayed = listing.add_mutually_exclusive_group()
    replayed.add_argument("--replayed", dest="replayed", action="store_true", default=None)
    replayed.add_argument("--not-replayed", dest="replayed", action="store_false")
    add_list_options(listing)
    listing.set_defaults(handler=guarded(run_list))

    show = sub.add_parser("show", help="one dead letter with its value and headers")
    show.add_argument("letter_id", type=int, metavar="ID")
    show.set_defaults(handler=guarded(run_show))

    replay = sub.add_parser("replay", help="re-send letters to their original topic (audited)")
    _filters(replay)
    replay.add_argument("--id", dest="ids", type=int, action="append", help="this letter (repeat)")
    replay.add_argument(
        "--include-replayed", action="store_true", help="also letters replayed before"
    )
    replay.add_argument("--limit", type=int, default=100, help="at most N letters (default 100)")
    replay.add_argument("--dry-run", action="store_true", help="print what would be replayed")
    replay.set_defaults(handler=guarded(run_replay))


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topic", help="original topic (full name or e.g. 'backfill')")
    parser.add_argument("--error-code", choices=deadletters.ERROR_CODES)


def _filters_of(args: argparse.Namespace, settings: Settings, **extra: Any) -> deadletters.Filters:
    topics = Topics.from_settings(settings)
    return deadletters.Filters(
        topic=topics.full_name(args.topic) if args.topic else None,
        error_code=args.error_code,
        **extra,
    )


def _plain(item: deadletters.DeadLetterItem) -> dict[str, Any]:
    row = fields(item)
    value = row.pop("value")
    for name, v in row.items():
        if hasattr(v, "isoformat"):
            row[name] = v.isoformat()
    if value is not None:
        row["value"] = base64.b64encode(value).decode()
        with contextlib.suppress(UnicodeDecodeError):
            row["value_text"] = value.decode("utf-8")
    return row


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    filters = _filters_of(args, settings, replayed=args.replayed)
    return run_listing(
        args,
        settings,
        lambda session: deadletters.list_letters(session, filters, limit=args.limit),
        COLUMNS,
        empty="no dead letters",
        row=_plain,
    )


def run_show(args: argparse.Namespace, settings: Settings) -> int:
    async def show() -> deadletters.DeadLetterItem | None:
        async with session_scope(settings) as session:
            return await deadletters.get_letter(session, args.letter_id)

    item = run_service(show)
    if item is None:
        err(f"error: no dead letter {args.letter_id}")
        return EXIT_FAILURE
    out(json.dumps(_plain(item), indent=2))
    return EXIT_OK


async def replay(settings: Settings, args: argparse.Namespace) -> deadletters.ReplayResult:
    """Replay in one transaction, then publish the outbox rows it wrote (best effort)."""
    filters = _filters_of(
        args, settings, replayed=None if args.include_replayed else False, ids=args.ids
    )
    engine = make_engine(settings, pool_size=1)
    sessionmaker = make_sessionmaker(engine)
    try:
        async with transaction(sessionmaker) as session:
            result = await deadletters.replay(
                session,
                filters,
                work_topics=Topics.from_settings(settings).work(),
                limit=args.limit,
                dry_run=args.dry_run,
                operator=deadletters.Operator(actor=cli_actor()),
            )
            rows = outbox.enqueued(session)
        if rows:
            publisher = KafkaPublisher(settings.kafka_bootstrap, timeout_seconds=10.0)
            try:
                await outbox.publish_enqueued(sessionmaker, publisher, rows)
            except Exception as exc:  # committed: the relay publishes them later
                err(f"warning: not published now ({exc}); the agents' relay will send them")
            finally:
                await publisher.close()
        return result
    finally:
        await engine.dispose()


def run_replay(args: argparse.Namespace, settings: Settings) -> int:
    if not limit_ok(args.limit, MAX_LIMIT):
        return EXIT_USAGE
    result = run_service(lambda: replay(settings, args))
    for item, outbox_id in result.replayed:
        line = {
            "id": item.id,
            "original_topic": item.original_topic,
            "key": item.key,
            "error_code": item.error_code,
            "outbox_id": outbox_id,
            "dry_run": result.dry_run,
        }
        out(json.dumps(line))
    verb = "would replay" if result.dry_run else "replayed"
    out(json.dumps({"summary": verb, "count": len(result.replayed), "skipped": result.skipped}))
    return EXIT_OK
