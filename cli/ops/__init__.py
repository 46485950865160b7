"""`nexus ops ...`: operator commands.

Extension point: each operator command group is a module with
`register(subparsers: SubParsers) -> None` listed in `COMMAND_MODULES`. To add
`nexus ops requeue`, `nexus ops jobs` or `nexus ops replay-dead-letter`, write
`cli/ops/requeue.py` (etc.) following `cli/ops/keys.py` and append it here. Handlers receive
`(args, settings)`, open their own engine (`cli.ops.db.session_scope`) and return an exit
status; wrap them in `cli.common.guarded` so domain errors become exit status 1.
"""

from __future__ import annotations

import argparse
from types import ModuleType

from cli.common import EXIT_USAGE, SubParsers
from cli.ops import dead_letter, jobs, keys, operations, outbox, requeue
from nexus.config import Settings

COMMAND_MODULES: tuple[ModuleType, ...] = (
    keys,
    requeue,
    jobs,
    dead_letter,
    outbox,
    operations,
)


def register(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser(
        "ops",
        help="operator commands (keys, requeue, jobs, replay-dead-letter, outbox, operations)",
    )
    parser.set_defaults(handler=_usage(parser))
    ops_subparsers = parser.add_subparsers(title="operator commands", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(ops_subparsers)


def _usage(parser: argparse.ArgumentParser) -> object:
    def handler(args: argparse.Namespace, settings: Settings) -> int:
        parser.print_help()
        return EXIT_USAGE

    return handler
