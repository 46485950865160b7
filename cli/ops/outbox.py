"""`nexus ops outbox list|retry`: the outbox rows operators look after (SPEC §10).

`retry` is the CLI twin of `POST /internal/outbox/{id}/retry` and is audited the same way
(an `operator_actions` row, actor `cli:<user>`).
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json

from cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, SubParsers, err, guarded, out, run_service
from cli.ops.db import session_scope
from cli.ops.keys import format_table
from nexus.config import Settings
from nexus.jobs import relay
from nexus.operators.service import record_action

STATUSES = ("parked", "unpublished", "published")
COLUMNS = ("id", "topic", "key", "publish_attempts", "last_error", "parked_at", "created_at")


def register(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("outbox", help="list parked outbox rows and retry them")
    parser.set_defaults(handler=lambda args, settings: _help(parser))
    sub = parser.add_subparsers(title="outbox commands", metavar="COMMAND")
    listing = sub.add_parser("list", help="outbox rows of one status, oldest first")
    listing.add_argument("--status", choices=STATUSES, default="parked")
    listing.add_argument("--limit", type=int, default=50, help="rows (default 50)")
    listing.add_argument("--json", action="store_true", help="one JSON array")
    listing.set_defaults(handler=guarded(run_list))
    retry = sub.add_parser("retry", help="give a parked row a fresh start (audited)")
    retry.add_argument("row_id", type=int, metavar="ID")
    retry.set_defaults(handler=guarded(run_retry))


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return EXIT_USAGE


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    if not 1 <= args.limit <= 10_000:
        err("error: --limit must be 1..10000")
        return EXIT_USAGE

    async def listing() -> list[relay.OutboxItem]:
        async with session_scope(settings) as session:
            return await relay.list_rows(session, status=args.status, limit=args.limit)

    items = run_service(listing)[: args.limit]
    rows = [
        {
            k: (v.isoformat() if hasattr(v, "isoformat") else v)
            for k, v in dataclasses.asdict(i).items()
        }
        for i in items
    ]
    if args.json:
        out(json.dumps(rows))
    elif not rows:
        out(f"no {args.status} outbox rows")
    else:
        table = [{c: None if r[c] is None else str(r[c]) for c in COLUMNS} for r in rows]
        for line in format_table(table, COLUMNS):
            out(line)
    return EXIT_OK


def run_retry(args: argparse.Namespace, settings: Settings) -> int:
    async def retry() -> bool | None:
        async with session_scope(settings) as session:
            retried = await relay.retry_parked(session, args.row_id)
            await record_action(
                session,
                actor=f"cli:{getpass.getuser()}",
                action="outbox.retry",
                target={"outbox_id": args.row_id},
                outcome={True: "retried", False: "not_parked", None: "not_found"}[retried],
            )
            return retried

    retried = run_service(retry)
    if retried is None:
        err(f"error: no outbox row {args.row_id}")
        return EXIT_FAILURE
    out(f"outbox row {args.row_id}: " + ("due now" if retried else "not parked; nothing to do"))
    return EXIT_OK
