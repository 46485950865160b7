"""Guarded state transitions: a state machine's table is data every status write obeys.

A `StateTable` names the table, its status column and, for every state, the states it may
be entered from. A `Transition(table, from_states, to)` is one allowed move; building one
the table does not allow raises `IllegalTransition` (at import time for the module-level
transitions of each aggregate), so a status write the table forbids cannot exist.

A transition renders its guarded statement (`update_sql`): `UPDATE <table> SET <status> =
'<to>', ... WHERE <key> AND <status> IN (<from states>) [AND <extra guard, e.g. the lease>]
RETURNING ...`. The states are literals of the statement, not parameters: they are fixed
per transition, so the text is fixed too and the hot statements stay prepared and cached
(the same text may ride as a CTE inside a bigger statement: `cte`).

A guarded update that matches nothing is never ignored: `apply` re-reads the row in the
same transaction and returns `Missed` only for the states the caller names as an explicit
no-op (an idempotent replay, a stale message); anything else raises `TransitionMissed`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from nexus.db.types import ResultRow

S = TypeVar("S", bound=StrEnum)


class IllegalTransition(ValueError):
    """A transition its state table does not allow (a programming error)."""


class TransitionMissed(RuntimeError):
    """A guarded update matched nothing and the row is in no state the caller allows."""

    def __init__(self, table: str, key: Mapping[str, object], current: str | None) -> None:
        where = "missing" if current is None else f"in state {current!r}"
        super().__init__(f"{table} {dict(key)}: the guarded transition missed (row {where})")
        self.current = current


@dataclass(frozen=True)
class StateTable(Generic[S]):
    """`entered_from[to]` = the states `to` may be entered from (a missing key: none)."""

    table: str
    status_column: str
    key_columns: tuple[str, ...]
    entered_from: Mapping[S, frozenset[S]]

    def bound(self, table: str, key_columns: tuple[str, ...]) -> StateTable[S]:
        """The same machine on another table (the job machine runs on every job table)."""
        return StateTable(table, self.status_column, key_columns, self.entered_from)

    def allows(self, from_state: S, to: S) -> bool:
        return from_state in self.entered_from.get(to, frozenset())

    def edges(self) -> list[tuple[S, S]]:
        """Every allowed (from, to) pair."""
        return [(src, to) for to, sources in self.entered_from.items() for src in sources]

    def key_sql(self, bind_prefix: str = "key_") -> str:
        return " AND ".join(f"{name} = :{bind_prefix}{name}" for name in self.key_columns)


def _literal(state: StrEnum) -> str:
    if "'" in state.value:
        raise IllegalTransition(f"state {state.value!r} cannot be a SQL literal")
    return f"'{state.value}'"


@dataclass(frozen=True)
class Transition(Generic[S]):
    """One allowed move `from_states → to` of `machine` (validated when built)."""

    machine: StateTable[S]
    from_states: frozenset[S]
    to: S

    def __post_init__(self) -> None:
        if not self.from_states:
            raise IllegalTransition(f"{self.machine.table}: a transition needs a from-state")
        refused = sorted(s.value for s in self.from_states if not self.machine.allows(s, self.to))
        if refused:
            raise IllegalTransition(
                f"{self.machine.table}: {refused} → {self.to.value} is not in the state table"
            )

    def on(self, machine: StateTable[S]) -> Transition[S]:
        """This transition on `machine`, a `bound` copy of its own table."""
        if machine.entered_from is not self.machine.entered_from:
            raise IllegalTransition(f"{machine.table} does not follow {self.machine.table}")
        return Transition(machine, self.from_states, self.to)

    def guard(self, qualifier: str = "") -> str:
        """`<status> IN (<from states>)`, optionally qualified by a table name."""
        return _in_states(self.machine, self.from_states, qualifier)

    def update_sql(self, **parts: str) -> str:
        """The guarded UPDATE (see `render_update` for the parts)."""
        return render_update(self.machine, _literal(self.to), self.from_states, **parts)

    def cte(self, name: str, **parts: str) -> str:
        """The guarded UPDATE as a `name AS (...)` item of a WITH list."""
        return f"{name} AS ({self.update_sql(**parts)})"


@dataclass(frozen=True)
class Either(Generic[S]):
    """`then` when the SQL condition `when` holds for the row, else `otherwise`: one
    statement for a move whose target the row decides (a failed job: retry or give up)."""

    when: str
    then: Transition[S]
    otherwise: Transition[S]

    def __post_init__(self) -> None:
        if self.then.machine != self.otherwise.machine:
            raise IllegalTransition("both branches must be moves of the same table")

    def update_sql(self, **parts: str) -> str:
        status = (
            f"CASE WHEN {self.when} THEN {_literal(self.then.to)} "
            f"ELSE {_literal(self.otherwise.to)} END"
        )
        from_states = self.then.from_states | self.otherwise.from_states
        return render_update(self.then.machine, status, from_states, **parts)


def either(when: str, then: Transition[S], otherwise: Transition[S]) -> Either[S]:
    return Either(when, then, otherwise)


def _in_states(machine: StateTable[S], states: frozenset[S], qualifier: str = "") -> str:
    column = f"{qualifier}.{machine.status_column}" if qualifier else machine.status_column
    literals = ", ".join(_literal(s) for s in sorted(states, key=str))
    return f"{column} IN ({literals})"


def render_update(
    machine: StateTable[S],
    status: str,
    from_states: frozenset[S],
    *,
    where: str,
    returning: str,
    set_also: str = "",
    guard: str = "",
    from_: str = "",
    qualifier: str = "",
) -> str:
    """`UPDATE <table> SET <status> = <status>[, set_also] [FROM from_] WHERE (<where>)
    AND <status> IN (<from_states>) [AND (<guard>)] RETURNING <returning>`.

    `where` selects the row (its key), `guard` adds conditions (the lease, `EXISTS (SELECT 1
    FROM moved)`), `qualifier` names the table in the guard when `from_` joins another."""
    assignments = f"{machine.status_column} = {status}"
    if set_also:
        assignments += f", {set_also}"
    conditions = f"({where}) AND {_in_states(machine, from_states, qualifier)}"
    if guard:
        conditions += f" AND ({guard})"
    joined = f" FROM {from_}" if from_ else ""
    return (
        f"UPDATE {machine.table} SET {assignments}{joined} WHERE {conditions} RETURNING {returning}"
    )


@dataclass(frozen=True)
class Moved:
    """The transition happened; `row` is what its RETURNING clause returned."""

    row: ResultRow


@dataclass(frozen=True)
class Missed(Generic[S]):
    """The guard did not hold and the row is in `current`, a state the caller allows as a
    no-op (None: the row is missing and the caller allows that)."""

    current: S | None


@dataclass(frozen=True)
class Apply(Generic[S]):
    """A transition of one row, by key, with the caller's extra assignments and guard."""

    transition: Transition[S]
    set_also: str = ""
    guard: str = ""
    returning: str = "1 AS moved"
    params: Mapping[str, object] = field(default_factory=dict)


async def apply(
    session: AsyncSession | AsyncConnection,
    change: Apply[S],
    key: Mapping[str, object],
    *,
    noop_if: Iterable[S | None] = (),
) -> Moved | Missed[S]:
    """Run the guarded UPDATE for the row `key`; on a miss, re-read its state in the same
    transaction: a state in `noop_if` (None there: a missing row) is `Missed`, an explicit
    no-op; anything else raises `TransitionMissed`."""
    machine = change.transition.machine
    key_params = {f"key_{name}": key[name] for name in machine.key_columns}
    sql = change.transition.update_sql(
        where=machine.key_sql(),
        returning=change.returning,
        set_also=change.set_also,
        guard=change.guard,
    )
    row = (await session.execute(text(sql), {**key_params, **change.params})).one_or_none()
    if row is not None:
        return Moved(row)
    current = await session.scalar(
        text(f"SELECT {machine.status_column} FROM {machine.table} WHERE {machine.key_sql()}"),
        key_params,
    )
    allowed = set(noop_if)
    if current is None:
        if None in allowed:
            return Missed(None)
        raise TransitionMissed(machine.table, key, None)
    state = type(change.transition.to)(current)
    if state in allowed:
        return Missed(state)
    raise TransitionMissed(machine.table, key, state.value)
