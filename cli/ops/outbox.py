"""`nexus ops outbox list|retry`: the outbox rows operators look after (SPEC §10).

`retry` is the CLI twin of `POST /internal/outbox/{id}/retry` and is audited the same way
(an `operator_actions` row, actor `cli:<user>`).
"""

from __future__ import annotations

import argparse

from cli.common import SubParsers, guarded, usage
from cli.ops.output import add_list_options, run_audited_retry, run_listing
from nexus.config import Settings
from nexus.jobs import relay

STATUSES = ("parked", "unpublished", "published")
COLUMNS = ("id", "topic", "key", "publish_attempts", "last_error", "parked_at", "created_at")


def register(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("outbox", help="list parked outbox rows and retry them")
    parser.set_defaults(handler=usage(parser))
    sub = parser.add_subparsers(title="outbox commands", metavar="COMMAND")
    listing = sub.add_parser("list", help="outbox rows of one status, oldest first")
    listing.add_argument("--status", choices=STATUSES, default="parked")
    add_list_options(listing)
    listing.set_defaults(handler=guarded(run_list))
    retry = sub.add_parser("retry", help="give a parked row a fresh start (audited)")
    retry.add_argument("row_id", type=int, metavar="ID")
    retry.set_defaults(handler=guarded(run_retry))


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    return run_listing(
        args,
        settings,
        lambda session: relay.list_rows(session, status=args.status, limit=args.limit),
        COLUMNS,
        empty=f"no {args.status} outbox rows",
    )


def run_retry(args: argparse.Namespace, settings: Settings) -> int:
    return run_audited_retry(
        settings,
        lambda session: relay.retry_parked(session, args.row_id),
        action="outbox.retry",
        target={"outbox_id": args.row_id},
        not_retried="not_parked",
        what=f"outbox row {args.row_id}",
        not_retried_note="not parked; nothing to do",
    )
