"""Reads on an asyncpg connection itself, without SQLAlchemy's layers.

The API's hottest reads are one statement each. Run through SQLAlchemy's `Connection`,
`text()` and `Result` layers, that statement cost more of the worker's CPU than the
database round trip itself (bench/api.py, docs/performance.md). Here the statement goes
straight to asyncpg on a connection of the read pool (`nexus.db.readpool`): asyncpg
prepares it once per connection and keeps it in its statement cache, so a read is one
round trip, and its rows are asyncpg records (read by column name).

A statement is written once, with `:name` parameters (`Statement`), and runs on either
kind of executor (`fetch`): a read pool connection (`DriverReader`) or a SQLAlchemy
session/connection inside a unit of work. Failures are translated like
`translate_db_errors`; a connection that failed or was interrupted mid-statement (the
request deadline) is marked broken, so the pool closes it instead of handing it out again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

import asyncpg
from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from nexus.db.errors import is_connection_error, translate

# `:name` (not the `::` of a cast, not inside a word).
_PARAMETER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class Statement:
    """SQL with `:name` parameters, compiled once for asyncpg (`$1`, `$2`... one number
    per name) and for SQLAlchemy (`text()`)."""

    __slots__ = ("names", "positional", "sql", "text")

    def __init__(self, sql: str) -> None:
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"

        self.sql = sql
        self.positional = _PARAMETER.sub(number, sql)
        self.names = tuple(names)
        self.text: TextClause = text(sql)

    def arguments(self, params: Mapping[str, object]) -> list[object]:
        return [params[name] for name in self.names]


class DriverReader:
    """One checked-out pool connection, used through asyncpg (see the module docstring)."""

    __slots__ = ("broken", "connection")

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection
        # Set when the connection may be unusable (it failed, or a statement on it was
        # cancelled half-way): it is closed instead of going back to the pool.
        self.broken = False

    async def fetch(self, statement: Statement, params: Mapping[str, object]) -> list[Any]:
        try:
            return await self.connection.fetch(statement.positional, *statement.arguments(params))
        except BaseException as exc:
            # An error answered by the server leaves the connection usable (unless it says
            # the server is going away); anything else, a cancellation half-way included,
            # leaves its protocol state unknown.
            self.broken = not isinstance(exc, asyncpg.PostgresError) or is_connection_error(exc)
            domain = translate(exc) if isinstance(exc, Exception) else None
            if domain is None:
                raise
            raise domain from exc


def utc_text(column: str) -> str:
    """SQL rendering the timestamptz `column` as the API writes timestamps: RFC 3339 in UTC
    with `Z`, the microseconds as six digits unless they are zero (then none): what
    `web.envelope.json_response` (orjson) writes for the `datetime` asyncpg would build.
    For the many timestamps of a hot page: asyncpg's `datetime` costs the worker ~1.6 µs
    each on a 2-core machine (docs/performance.md); PostgreSQL renders the text in C, on
    the database's time. Independent of the session's TimeZone and DateStyle."""
    return (
        f"replace(to_char(({column}) AT TIME ZONE 'UTC', "
        """'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), '.000000Z', 'Z')"""
    )


def parse_utc_text(value: str) -> datetime:
    """A `utc_text` value as the aware `datetime` it renders (for a page's cursor key)."""
    return datetime.fromisoformat(value)


Executor = DriverReader | AsyncSession | AsyncConnection
# A row of `fetch`: an asyncpg record or a SQLAlchemy row mapping, read by column name.
Row = Mapping[str, Any]


async def fetch(
    executor: Executor, statement: Statement, params: Mapping[str, object]
) -> Sequence[Row]:
    """The rows of `statement` with `params`, on either kind of executor."""
    if isinstance(executor, DriverReader):
        rows: Sequence[Row] = await executor.fetch(statement, params)
        return rows
    result = await executor.execute(statement.text, dict(params))
    return cast(Sequence[Row], result.mappings().all())
