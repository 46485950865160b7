"""`nexus ops operations show ID`: a background operation's status, progress and result."""

from __future__ import annotations

import argparse
import json
import uuid
from typing import Any

from cli.common import EXIT_OK, SubParsers, guarded, out, run_service, usage
from cli.ops.db import session_scope
from cli.ops.output import plain
from nexus.config import Settings
from nexus.errors import NotFound
from nexus.operations import service


def register(subparsers: SubParsers) -> None:
    group = subparsers.add_parser("operations", help="background operations (bulk requeue)")
    group.set_defaults(handler=usage(group))
    sub = group.add_subparsers(title="operation commands", metavar="COMMAND")
    show = sub.add_parser("show", help="status, progress and result of one operation")
    show.add_argument("operation_id", type=uuid.UUID, metavar="ID")
    show.add_argument("--json", action="store_true", help="print the operation as JSON")
    show.set_defaults(handler=guarded(run_show))


def lines(operation: dict[str, Any]) -> list[str]:
    """The human form: one `name: value` line per field, JSON for the structured ones."""
    out_lines = []
    for name, value in operation.items():
        if isinstance(value, dict):
            value = json.dumps(value, sort_keys=True)
        out_lines.append(f"{name + ':':<14}{'' if value is None else value}")
    return out_lines


def run_show(args: argparse.Namespace, settings: Settings) -> int:
    async def show() -> dict[str, Any]:
        async with session_scope(settings) as session:
            operation = await service.get(session, args.operation_id)
        if operation is None:
            raise NotFound(f"no operation {args.operation_id}")
        return {k: plain(v) for k, v in operation.public().items()}

    operation = run_service(show)
    if args.json:
        out(json.dumps(operation))
    else:
        for line in lines(operation):
            out(line)
    return EXIT_OK
