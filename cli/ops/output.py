"""How `nexus ops` list commands print rows: a JSON array with `--json`, else a table.

One home for the parts every list command shares (`run_listing`: the `--limit` range check,
the read in one session, turning a service row into JSON-safe values, the JSON-or-table
choice) and for the audited "retry one row" commands.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, err, out, run_service
from cli.ops.db import session_scope
from cli.ops.keys import format_table
from nexus.config import Settings
from nexus.operators.retries import Retry, retry_outcome
from nexus.operators.service import record_action

MAX_LIMIT = 10_000


def add_list_options(parser: argparse.ArgumentParser, *, default_limit: int = 50) -> None:
    """`--limit N` (checked by `limit_ok` when the command runs) and `--json`."""
    parser.add_argument(
        "--limit", type=int, default=default_limit, help=f"rows (default {default_limit})"
    )
    parser.add_argument("--json", action="store_true", help="one JSON array")


def limit_ok(limit: int, maximum: int = MAX_LIMIT) -> bool:
    """False (after saying why on stderr) when `--limit` is outside 1..maximum."""
    if 1 <= limit <= maximum:
        return True
    err(f"error: --limit must be 1..{maximum}")
    return False


def plain(value: Any) -> Any:
    """A JSON-safe value: timestamps as ISO 8601, UUIDs as text, the rest unchanged."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def fields(item: Any) -> dict[str, Any]:
    """A service row (a dataclass, a `nexus.db.types.Record` or a mapping) as a dict, in
    field order."""
    if isinstance(item, BaseModel):
        return item.model_dump()
    return dict(item) if isinstance(item, Mapping) else dataclasses.asdict(item)


def plain_row(item: Any) -> dict[str, Any]:
    """A service row as a dict of JSON-safe values."""
    return {k: plain(v) for k, v in fields(item).items()}


def _text(column: str, value: Any) -> str | None:
    return None if value is None else str(value)


def print_rows(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    *,
    as_json: bool,
    empty: str | None = None,
    cell: Callable[[str, Any], str | None] = _text,
) -> None:
    """Rows as one JSON array, or `empty` when there are none, or a table of `columns`."""
    if as_json:
        out(json.dumps(list(rows)))
    elif not rows and empty is not None:
        out(empty)
    else:
        table = [{c: cell(c, r[c]) for c in columns} for r in rows]
        for line in format_table(table, columns):
            out(line)


def run_listing(
    args: argparse.Namespace,
    settings: Settings,
    fetch: Callable[[AsyncSession], Awaitable[Sequence[Any]]],
    columns: Sequence[str],
    *,
    empty: str | None = None,
    cell: Callable[[str, Any], str | None] = _text,
    row: Callable[[Any], dict[str, Any]] = plain_row,
) -> int:
    """A list command: exit 2 when `--limit` is out of range, else `fetch(session)` in one
    session and its first `--limit` rows printed by `print_rows` (`--json` or a table)."""
    if not limit_ok(args.limit):
        return EXIT_USAGE

    async def listing() -> Sequence[Any]:
        async with session_scope(settings) as session:
            return await fetch(session)

    rows = [row(item) for item in run_service(listing)[: args.limit]]
    print_rows(rows, columns, as_json=args.json, empty=empty, cell=cell)
    return EXIT_OK


def cli_actor() -> str:
    """Who a CLI command's audit rows name: `cli:<login>` (`cli:unknown` when the login
    cannot be read)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}"


def run_audited_retry(
    settings: Settings,
    retry: Retry,
    *,
    action: str,
    target: Mapping[str, Any],
    not_retried: str,
    what: str,
    not_retried_note: str,
) -> int:
    """`nexus ops ... retry`: the retry and its audit row (actor `cli:<user>`) in one
    transaction, then `<what>: due now` (or `<what>: <not_retried_note>`); exit status 1
    with `error: no <what>` when there is no such row."""

    async def retry_and_audit() -> bool | None:
        async with session_scope(settings) as session:
            retried = await retry(session)
            await record_action(
                session,
                actor=cli_actor(),
                action=action,
                target=target,
                outcome=retry_outcome(retried, not_retried),
            )
            return retried

    retried = run_service(retry_and_audit)
    if retried is None:
        err(f"error: no {what}")
        return EXIT_FAILURE
    out(f"{what}: " + ("due now" if retried else not_retried_note))
    return EXIT_OK
