"""`nexus ops keys create|list|disable`: operator API keys (SPEC §1)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import datetime

from cli.common import EXIT_OK, SubParsers, guarded, out, run_service, usage
from cli.ops.db import session_scope
from nexus.config import Settings
from nexus.operators import service
from nexus.operators.roles import Role


def register(subparsers: SubParsers) -> None:
    keys = subparsers.add_parser("keys", help="create, list and disable operator keys")
    keys.set_defaults(handler=usage(keys))
    sub = keys.add_subparsers(title="key commands", metavar="COMMAND")

    create = sub.add_parser("create", help="create a key and print its token once")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--name", required=True, help="unique name, 1..100 characters")
    create.add_argument("--json", action="store_true", help="print JSON")
    create.set_defaults(handler=guarded(run_create))

    listing = sub.add_parser("list", help="list keys (never their tokens)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=guarded(run_list))

    disable = sub.add_parser("disable", help="disable a key by name or id (idempotent)")
    disable.add_argument("name_or_id", metavar="NAME_OR_ID")
    disable.set_defaults(handler=guarded(run_disable))


def _ts(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def run_create(args: argparse.Namespace, settings: Settings) -> int:
    async def create() -> service.CreatedKey:
        async with session_scope(settings) as session:
            return await service.create_key(session, name=args.name, role=args.role)

    key = run_service(create)
    if args.json:
        out(
            json.dumps(
                {"id": str(key.id), "name": key.name, "role": key.role.value, "token": key.token}
            )
        )
    else:
        out(f"token: {key.token}")
        out(f"id:    {key.id}")
        out(f"name:  {key.name}")
        out(f"role:  {key.role.value}")
        out("Store the token now: it is shown only once (only its hash is kept).")
    return EXIT_OK


def _as_dict(info: service.KeyInfo) -> dict[str, str | None]:
    return {
        "id": str(info.id),
        "name": info.name,
        "role": info.role,
        "created_at": _ts(info.created_at),
        "disabled_at": _ts(info.disabled_at) or None,
        "last_used_at": _ts(info.last_used_at) or None,
    }


def format_table(rows: Sequence[dict[str, str | None]], columns: Sequence[str]) -> list[str]:
    cells = [[str(row.get(c) or "-") for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return [line.rstrip() for line in lines]


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    async def listing() -> list[service.KeyInfo]:
        async with session_scope(settings) as session:
            return await service.list_keys(session)

    rows = [_as_dict(k) for k in run_service(listing)]
    if args.json:
        out(json.dumps(rows))
    elif not rows:
        out("no operator keys")
    else:
        columns = ("id", "name", "role", "created_at", "disabled_at", "last_used_at")
        for line in format_table(rows, columns):
            out(line)
    return EXIT_OK


def run_disable(args: argparse.Namespace, settings: Settings) -> int:
    async def disable() -> service.KeyInfo:
        async with session_scope(settings) as session:
            return await service.disable_key(session, args.name_or_id)

    info = run_service(disable)
    out(f"disabled {info.name} ({info.id}) at {_ts(info.disabled_at)}")
    return EXIT_OK
