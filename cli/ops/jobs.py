"""`nexus ops jobs`: list backfill jobs from Postgres, newest `updated_at` first."""

from __future__ import annotations

import argparse
import uuid

from cli.common import SubParsers, guarded
from cli.ops.output import plain_row, run_listing
from nexus.config import Settings
from nexus.sharing import operations
from nexus.sharing.operations import JobFilters

STATUSES = ("pending", "running", "completed", "failed", "cancelled")
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
    job = operations.BACKFILL_JOB
    return run_listing(
        args,
        settings,
        lambda session: operations.list_jobs(session, job, filters_from(args), limit=args.limit),
        COLUMNS,
        empty="no backfill jobs match",
        row=lambda row: plain_row(operations.job_item(job, row)),
    )
