"""`nexus ops ...`: operator commands.

Extension point: each operator command group is a module with
`register(subparsers: SubParsers) -> None` listed in `COMMAND_MODULES`. To add
`nexus ops requeue`, `nexus ops jobs` or `nexus ops replay-dead-letter`, write
`cli/ops/requeue.py` (etc.) following `cli/ops/keys.py` and append it here. Handlers receive
`(args, settings)`, open their own engine (`cli.ops.db.session_scope`) and return an exit
status; wrap them in `cli.common.guarded` so domain errors become exit status 1.
"""

from __future__ import annotations

from types import ModuleType

from cli.common import SubParsers, usage
from cli.ops import (
    audit,
    dead_letter,
    dead_letters,
    jobs,
    keys,
    operations,
    outbox,
    requeue,
    webhooks,
    workers,
)

COMMAND_MODULES: tuple[ModuleType, ...] = (
    keys,
    requeue,
    jobs,
    dead_letter,
    dead_letters,
    outbox,
    operations,
    workers,
    webhooks,
    audit,
)


def register(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser(
        "ops",
        help=(
            "operator commands (keys, requeue, jobs, dead-letter, replay-dead-letter, outbox, "
            "operations, workers, webhooks, audit)"
        ),
    )
    parser.set_defaults(handler=usage(parser))
    ops_subparsers = parser.add_subparsers(title="operator commands", metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(ops_subparsers)
