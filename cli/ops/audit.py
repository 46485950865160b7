"""`nexus ops audit verify`: check the hash chains of the audit ledgers (SPEC §10).

Streams `operator_actions` (one chain) and `job_events` (one chain per job key) in chain
order and recomputes every row's hash (`nexus.audit.chain`). Prints one line per problem
(an edited row; rows deleted before a row; a chain whose start is gone), then a JSON
summary with the row counts and the head of `operator_actions` (keep it elsewhere: passed
back as `--expect-head ID:HASH`, it shows a deleted tail or a rewritten chain). Exit
status: 0 clean, 1 a problem was found or the database failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json

from cli.common import EXIT_FAILURE, EXIT_OK, SubParsers, guarded, out, run_service, usage
from nexus.audit.chain import Report, verify
from nexus.config import Settings
from nexus.db.engine import make_engine


def register(subparsers: SubParsers) -> None:
    audit = subparsers.add_parser("audit", help="audit ledgers (verify their hash chains)")
    audit.set_defaults(handler=usage(audit))
    sub = audit.add_subparsers(title="audit commands", metavar="COMMAND")
    check = sub.add_parser(
        "verify", help="report edited or deleted rows of operator_actions and job_events"
    )
    check.add_argument(
        "--expect-head",
        metavar="ID:HASH",
        type=_head,
        default=None,
        help="a head printed by an earlier run: that row must still exist with that hash",
    )
    check.set_defaults(handler=guarded(run_verify))


def _head(raw: str) -> tuple[int, str]:
    row_id, sep, digest = raw.partition(":")
    if not sep or not row_id.isascii() or not row_id.isdigit() or len(digest) != 64:
        raise argparse.ArgumentTypeError("expected ID:HASH (a row id and a 64-hex hash)")
    return int(row_id), digest.lower()


async def _verify(settings: Settings, anchor: tuple[int, str] | None) -> Report:
    engine = make_engine(settings, pool_size=1)
    try:
        async with engine.connect() as conn:
            return await verify(conn, anchor=anchor)
    finally:
        await engine.dispose()


def run_verify(args: argparse.Namespace, settings: Settings) -> int:
    report = run_service(lambda: _verify(settings, args.expect_head))
    for problem in report.problems:
        out(str(problem))
    summary = {
        "clean": report.clean,
        "problems": len(report.problems),
        "rows": report.rows,
        "chains": report.chains,
        "heads": {
            table: {"id": row_id, "hash": digest}
            for table, (row_id, digest) in report.heads.items()
        },
    }
    out(json.dumps(summary, sort_keys=True))
    return EXIT_OK if report.clean else EXIT_FAILURE
