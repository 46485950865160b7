"""`nexus migrate [upgrade|downgrade] [REV]`: apply Alembic migrations to NEXUS_DATABASE_URL."""

from __future__ import annotations

import argparse

from cli.common import EXIT_OK, SubParsers, guarded, out, run_service
from cli.database import ensure_database
from nexus.config import Settings
from nexus.db.migrate import migrate


def register(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser(
        "migrate",
        help="apply database migrations (default: upgrade head)",
        description=(
            "Upgrade (creating the database first if it is missing) or downgrade the "
            "database at NEXUS_DATABASE_URL."
        ),
    )
    parser.add_argument("action", nargs="?", choices=("upgrade", "downgrade"), default="upgrade")
    parser.add_argument(
        "revision",
        nargs="?",
        default=None,
        help="target revision (default: head for upgrade, -1 for downgrade)",
    )
    parser.set_defaults(handler=guarded(run))


def run(args: argparse.Namespace, settings: Settings) -> int:
    revision = args.revision or ("head" if args.action == "upgrade" else "-1")
    if args.action == "upgrade" and run_service(lambda: ensure_database(settings.database_url)):
        out("created the database")
    migrate(settings.database_url, args.action, revision)
    out(f"migrate {args.action} {revision}: done")
    return EXIT_OK
