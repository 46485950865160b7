"""`nexus ops jobs`: list backfill jobs from Postgres, newest `updated_at` first."""

from __future__ import annotations

import argparse
import uuid
from typing import Any

from cli.common import EXIT_OK, SubParsers, guarded, run_service
from cli.ops.db import session_scope
from cli.ops.output import plain, print_rows
from nexus.config import Settings
from nexus.sharing import operations
from nexus.sharing.operations import JobFilters

STATUSES = ("pending", "running", "completed", "failed")
COLUMNS = (
    "default_library_id",
    "source_library_id",
    "user_id",
    "status",
    "attempts",
    "last_error_code",
    "next_attempt_at",
    "updated_at",
)


def _limit(value: str) -> int:
    n = int(value)
    if not 1 <= n <= 10_000:
        raise argparse.ArgumentTypeError("limit must be 1..10000")
    return n


def register(subparsers: SubParsers) -> None:
    p = subparsers.add_parser("jobs", help="list backfill jobs (newest updated first)")
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--user", type=uuid.UUID, metavar="ID")
    p.add_argument("--default-library", type=uuid.UUID, metavar="ID")
    p.add_argument("--source-library", type=uuid.UUID, metavar="ID")
    p.add_argument("--error-code", metavar="CODE")
    p.add_argument("--limit", type=_limit, default=50, help="rows (default 50, max 10000)")
    p.add_argument("--json", action="store_true", help="one JSON array of job items")
    p.set_defaults(handler=guarded(run_jobs))


def filters_from(args: argparse.Namespace) -> JobFilters:
    keys = {
        name: value
        for name, value in (
            ("user_id", args.user),
            ("default_library_id", args.default_library),
            ("source_library_id", args.source_library),
        )
        if value is not None
    }
    return JobFilters(keys=keys, status=args.status, error_code=args.error_code)


def run_jobs(args: argparse.Namespace, settings: Settings) -> int:
    async def listing() -> list[dict[str, Any]]:
        async with session_scope(settings) as session:
            rows = await operations.list_jobs(
                session, operations.BACKFILL_JOB, filters_from(args), limit=args.limit
            )
        return [operations.job_item(operations.BACKFILL_JOB, r) for r in rows[: args.limit]]

    items = [{k: plain(v) for k, v in item.items()} for item in run_service(listing)]
    print_rows(items, COLUMNS, as_json=args.json, empty="no backfill jobs match")
    return EXIT_OK
