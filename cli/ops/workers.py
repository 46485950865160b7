"""`nexus ops workers [--all] [--json]`: the agents workers (SPEC §10 "Workers").

Live workers (running or draining, heard from within three heartbeats) by default;
`--all` adds the stopped and dead ones still in the table, with `alive` telling which.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from cli.common import EXIT_OK, EXIT_USAGE, SubParsers, err, guarded, out, run_service
from cli.ops.db import session_scope
from cli.ops.keys import format_table
from nexus.config import Settings
from nexus.workers import service as workers

COLUMNS = ("id", "status", "alive", "started_at", "last_heartbeat_at", "assigned", "version")


def register(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("workers", help="list agents workers and their heartbeats")
    parser.add_argument("--all", action="store_true", help="stopped and dead workers too")
    parser.add_argument("--limit", type=int, default=200, help="rows (default 200)")
    parser.add_argument("--json", action="store_true", help="one JSON array")
    parser.set_defaults(handler=guarded(run_workers))


def run_workers(args: argparse.Namespace, settings: Settings) -> int:
    if not 1 <= args.limit <= 10_000:
        err("error: --limit must be 1..10000")
        return EXIT_USAGE

    async def listing() -> list[workers.WorkerInfo]:
        async with session_scope(settings) as session:
            return await workers.list_workers(
                session,
                heartbeat_seconds=settings.worker_heartbeat_seconds,
                include_gone=args.all,
                limit=args.limit,
            )

    rows = [
        {
            k: (v.isoformat() if hasattr(v, "isoformat") else v)
            for k, v in dataclasses.asdict(w).items()
        }
        for w in run_service(listing)
    ]
    if args.json:
        out(json.dumps(rows))
    elif not rows:
        out("no live workers" if not args.all else "no workers")
    else:
        table = [
            {
                c: ",".join(r[c]) if c == "assigned" else None if r[c] is None else str(r[c])
                for c in COLUMNS
            }
            for r in rows
        ]
        for line in format_table(table, COLUMNS):
            out(line)
    return EXIT_OK
