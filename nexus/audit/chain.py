"""Tamper-evident audit ledgers (SPEC §10 "Audit", docs/security.md).

`operator_actions` is one hash chain; `job_events` is one chain per (job_type, job_key).
Each row carries `prev_hash` (the `hash` of the chain's previous row, NULL for the first)
and `hash` = hex SHA-256 of `<table>.v1|<prev_hash or ''>|<fields>`, every field written
as `<number of characters>:<text>` (`-` for NULL), JSON as PostgreSQL renders jsonb,
timestamps as epoch microseconds. The database computes them when a row is inserted
(triggers of migration 0013, under a per-chain advisory lock); this module recomputes them
independently of those functions.

`verify` reports, per chain: a row whose content no longer matches its hash (edited), a
row whose `prev_hash` is not the hash of the row before it (rows deleted, or the row
before it edited together with its hash), and a chain whose first row has a `prev_hash`
(rows deleted at its start). Deleting the newest rows of a chain leaves no trace in the
chain itself: keep the reported head of `operator_actions` somewhere else and pass it back
as `anchor` (the row must still exist with the same hash) to detect that.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import TextClause

_MICROS = "(extract(epoch FROM at) * 1000000)::bigint::text"

# Every field as the text the hash covers, in hash order, then the chain columns.
_OPERATOR_ACTIONS = text(
    f"""
    SELECT id, id::text, operator_key_id::text, actor, action, target::text, outcome,
           details::text, request_id, {_MICROS}, prev_hash, hash
    FROM operator_actions ORDER BY operator_actions.id
    """
)
_JOB_EVENTS = text(
    f"""
    SELECT id, job_type || ' ' || job_key::text AS chain,
           id::text, job_type, job_key::text, from_status, to_status, attempt::text, actor,
           error_code, error_message, request_id, correlation_id, {_MICROS},
           prev_hash, hash
    FROM job_events ORDER BY job_events.job_type, job_events.job_key, job_events.id
    """
)


def _field(value: str | None) -> str:
    return "-" if value is None else f"{len(value)}:{value}"


def row_hash(table: str, prev_hash: str | None, fields: Sequence[str | None]) -> str:
    """The hash a row of `table` must carry, given its predecessor's hash and its fields
    (as text, in the order of the table's hash)."""
    payload = "|".join([f"{table}.v1", prev_hash or "", *(_field(f) for f in fields)])
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class Problem:
    table: str
    chain: str  # "" for operator_actions, "<job_type> <job_key>" for job_events
    row_id: int
    kind: str  # edited | missing_before | chain_start_missing | anchor_missing | anchor_changed
    detail: str

    def __str__(self) -> str:
        where = f"{self.table} {self.chain} " if self.chain else f"{self.table} "
        return f"{where}id {self.row_id}: {self.kind}: {self.detail}"


@dataclass
class Report:
    rows: dict[str, int] = field(default_factory=dict)
    chains: dict[str, int] = field(default_factory=dict)
    heads: dict[str, tuple[int, str]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems


@dataclass
class _Chain:
    table: str
    name: str
    last_id: int | None = None
    last_hash: str | None = None

    def check(
        self, row_id: int, fields: Sequence[str | None], prev: str | None, got: str
    ) -> list[Problem]:
        found: list[Problem] = []
        if row_hash(self.table, prev, fields) != got:
            found.append(
                Problem(self.table, self.name, row_id, "edited", "content does not match its hash")
            )
        if self.last_id is None and prev is not None:
            found.append(
                Problem(
                    self.table,
                    self.name,
                    row_id,
                    "chain_start_missing",
                    "the first remaining row links to a row that is gone",
                )
            )
        elif self.last_id is not None and prev != self.last_hash:
            found.append(
                Problem(
                    self.table,
                    self.name,
                    row_id,
                    "missing_before",
                    f"does not link to id {self.last_id}: rows between id {self.last_id} "
                    f"and id {row_id} were deleted (or id {self.last_id} was rewritten)",
                )
            )
        self.last_id, self.last_hash = row_id, got
        return found


async def verify(conn: AsyncConnection, *, anchor: tuple[int, str] | None = None) -> Report:
    """Check both ledgers, streaming them (constant memory); see the module docstring.
    `anchor` is an `operator_actions` head recorded earlier: (id, hash)."""
    report = Report()
    chain = _Chain("operator_actions", "")
    count = 0
    anchor_seen = False
    async for row in _stream(conn, _OPERATOR_ACTIONS):
        count += 1
        report.problems += chain.check(row[0], row[1:10], row[10], row[11])
        if anchor is not None and row[0] == anchor[0]:
            anchor_seen = True
            if row[11] != anchor[1]:
                report.problems.append(
                    Problem(
                        "operator_actions",
                        "",
                        row[0],
                        "anchor_changed",
                        "its hash is not the recorded one: the chain was rewritten",
                    )
                )
    if anchor is not None and not anchor_seen:
        report.problems.append(
            Problem(
                "operator_actions",
                "",
                anchor[0],
                "anchor_missing",
                "the recorded head is gone: rows were deleted",
            )
        )
    report.rows["operator_actions"] = count
    report.chains["operator_actions"] = 1 if count else 0
    if chain.last_id is not None and chain.last_hash is not None:
        report.heads["operator_actions"] = (chain.last_id, chain.last_hash)
    count = chains = 0
    current: _Chain | None = None
    async for row in _stream(conn, _JOB_EVENTS):
        count += 1
        if current is None or current.name != row[1]:
            current = _Chain("job_events", row[1])
            chains += 1
        report.problems += current.check(row[0], row[2:14], row[14], row[15])
    report.rows["job_events"] = count
    report.chains["job_events"] = chains
    return report


async def _stream(conn: AsyncConnection, sql: TextClause) -> AsyncIterator[Sequence[Any]]:
    result = await conn.stream(sql, execution_options={"yield_per": 2000})
    async for row in result:
        yield tuple(row)
