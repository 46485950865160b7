"""`nexus ops workers [--all] [--json]`: the agents workers (SPEC §10 "Workers").

Live workers (running or draining, heard from within three heartbeats) by default;
`--all` adds the stopped and dead ones still in the table, with `alive` telling which.
"""

from __future__ import annotations

import argparse
from typing import Any

from cli.common import SubParsers, guarded
from cli.ops.output import add_list_options, run_listing
from nexus.config import Settings
from nexus.workers import service as workers

COLUMNS = ("id", "status", "alive", "started_at", "last_heartbeat_at", "assigned", "version")


def register(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("workers", help="list agents workers and their heartbeats")
    parser.add_argument("--all", action="store_true", help="stopped and dead workers too")
    add_list_options(parser, default_limit=200)
    parser.set_defaults(handler=guarded(run_workers))


def run_workers(args: argparse.Namespace, settings: Settings) -> int:
    return run_listing(
        args,
        settings,
        lambda session: workers.list_workers(
            session,
            heartbeat_seconds=settings.worker_heartbeat_seconds,
            include_gone=args.all,
            limit=args.limit,
        ),
        COLUMNS,
        empty="no live workers" if not args.all else "no workers",
        cell=_cell,
    )


def _cell(column: str, value: Any) -> str | None:
    if column == "assigned":
        return ",".join(value)
    return None if value is None else str(value)
