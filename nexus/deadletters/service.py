"""Dead letters (SPEC §10): record what the agents could not process; list it; replay it.

- `record` runs in the agent's dead-letter path (one autocommit statement): one row per
  (topic, partition, offset); a redelivered offset updates the error of its row.
- Error codes are this module's own vocabulary (`ERROR_CODES`), never HTTP answers:
  `E_MESSAGE_INVALID` (not JSON, or not the topic's message shape), `E_MESSAGE_UNKNOWN`
  (its `message_type` header names a message this topic does not carry),
  `E_HANDLER_FAILED` (the handler raised outside any job's failure handling),
  `E_DEPENDENCY_UNAVAILABLE` (the database stayed down past the runner's back-off).
- `replay` re-sends letters to their original topic through the outbox, in the caller's
  transaction, together with the `replayed_at`/`replay_count` mark and one
  `operator_actions` row per letter, so all of it commits or none does. Only this
  deployment's work topics are targets; a letter naming another topic, or whose value is
  not JSON the outbox can hold, is skipped (and audited as such), never sent. Rows are
  taken `FOR UPDATE SKIP LOCKED`: two concurrent replays never send a letter twice.
  Replaying is safe: work messages only name jobs whose guarded rows decide, requeue
  messages are de-duplicated by message_id, a still-poisonous value dead-letters again.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from nexus import tracing
from nexus.db.types import Record
from nexus.jobs import outbox
from nexus.operators.service import record_action

MESSAGE_INVALID = "E_MESSAGE_INVALID"
MESSAGE_UNKNOWN = "E_MESSAGE_UNKNOWN"
HANDLER_FAILED = "E_HANDLER_FAILED"
DEPENDENCY_UNAVAILABLE = "E_DEPENDENCY_UNAVAILABLE"
ERROR_CODES = (MESSAGE_INVALID, MESSAGE_UNKNOWN, HANDLER_FAILED, DEPENDENCY_UNAVAILABLE)
MAX_ERROR_MESSAGE = 2000
REPLAY_ACTION = "dead_letter.replay"
# Trace headers of the failed delivery are not carried into a replay: it is a new trace.
_DROPPED_HEADERS = frozenset({"traceparent", "tracestate"})


@dataclass(frozen=True)
class Captured:
    """A message an agent could not process, as it was consumed."""

    original_topic: str
    partition: int | None
    offset: int | None
    key: str | None
    value: bytes
    headers: dict[str, str]
    error_code: str
    error_message: str
    worker_id: str | None


_RECORD = text(
    """
    INSERT INTO dead_letters (original_topic, partition, "offset", key, value, headers,
        error_code, error_message, worker_id)
    VALUES (:topic, :partition, :offset, :key, :value, CAST(:headers AS jsonb),
        :error_code, :error_message, :worker_id)
    ON CONFLICT (original_topic, partition, "offset") DO UPDATE SET
        error_code = EXCLUDED.error_code, error_message = EXCLUDED.error_message,
        worker_id = EXCLUDED.worker_id, at = now()
    RETURNING id
    """
)


async def record(conn: AsyncConnection | AsyncSession, letter: Captured) -> int:
    """Record `letter` (one statement); returns its row id."""
    row_id = await conn.scalar(
        _RECORD,
        {
            "topic": letter.original_topic,
            "partition": letter.partition,
            "offset": letter.offset,
            "key": letter.key,
            "value": letter.value,
            "headers": json.dumps(letter.headers),
            "error_code": letter.error_code,
            "error_message": letter.error_message[:MAX_ERROR_MESSAGE],
            "worker_id": letter.worker_id,
        },
    )
    assert row_id is not None
    return int(row_id)


@dataclass(frozen=True)
class Filters:
    """Which letters a list or replay covers (all given conditions hold)."""

    topic: str | None = None
    error_code: str | None = None
    # None: either; False: never replayed; True: replayed at least once.
    replayed: bool | None = None
    ids: Sequence[int] | None = None

    def where(self) -> tuple[str, dict[str, Any]]:
        clauses: list[str] = ["true"]
        params: dict[str, Any] = {}
        if self.topic is not None:
            clauses.append("original_topic = :topic")
            params["topic"] = self.topic
        if self.error_code is not None:
            clauses.append("error_code = :error_code")
            params["error_code"] = self.error_code
        if self.replayed is not None:
            clauses.append("replayed_at IS NOT NULL" if self.replayed else "replayed_at IS NULL")
        if self.ids is not None:
            clauses.append("id = ANY(CAST(:ids AS bigint[]))")
            params["ids"] = list(self.ids)
        return " AND ".join(clauses), params

    def summary(self) -> dict[str, Any]:
        return {
            name: value
            for name, value in (
                ("topic", self.topic),
                ("error_code", self.error_code),
                ("replayed", self.replayed),
                ("ids", list(self.ids) if self.ids is not None else None),
            )
            if value is not None
        }


class DeadLetter(Record):
    """A `dead_letters` row as operators list it (without its value)."""

    id: int
    original_topic: str
    partition: int | None
    offset: int | None
    key: str | None
    headers: dict[str, str]
    error_code: str
    error_message: str
    worker_id: str | None
    at: datetime
    replayed_at: datetime | None
    replay_count: int
    value_bytes: int


class DeadLetterItem(DeadLetter):
    """A letter with its value when it was asked for (`get_letter`)."""

    value: bytes | None = None


_COLUMNS = (
    'id, original_topic, partition, "offset", key, headers, error_code, error_message, '
    "worker_id, at, replayed_at, replay_count, octet_length(value) AS value_bytes"
)


async def list_letters(
    session: AsyncSession, filters: Filters, *, limit: int, after_id: int | None = None
) -> list[DeadLetterItem]:
    """Letters newest first; `limit + 1` rows so the caller can tell whether more follow."""
    where, params = filters.where()
    if after_id is not None:
        where += " AND id < :after_id"
        params["after_id"] = after_id
    rows = await session.execute(
        text(f"SELECT {_COLUMNS} FROM dead_letters WHERE {where} ORDER BY id DESC LIMIT :lim"),
        {**params, "lim": limit + 1},
    )
    return [DeadLetterItem(**dict(r._mapping)) for r in rows]


async def get_letter(session: AsyncSession, letter_id: int) -> DeadLetterItem | None:
    """One letter with its value; None when there is no such row."""
    row = (
        await session.execute(
            text(f"SELECT {_COLUMNS}, value FROM dead_letters WHERE id = :letter_id"),
            {"letter_id": letter_id},
        )
    ).one_or_none()
    return None if row is None else DeadLetterItem(**dict(row._mapping))


@dataclass(frozen=True)
class Operator:
    """Who asks for a replay (recorded in `operator_actions`)."""

    actor: str
    key_id: uuid.UUID | None = None
    request_id: str | None = None


@dataclass
class ReplayResult:
    dry_run: bool
    # Letters that are (or, in a dry run, would be) sent: (letter, outbox id or None).
    replayed: list[tuple[DeadLetterItem, int | None]] = field(default_factory=list)
    # Skipped letters by reason: "not_a_work_topic", "not_json".
    skipped: Counter[str] = field(default_factory=Counter)


def skip_reason(letter: DeadLetterItem, work_topics: Sequence[str]) -> str | None:
    """Why `letter` may not be replayed, or None."""
    if letter.original_topic not in work_topics:
        return "not_a_work_topic"
    try:
        raw = (letter.value or b"").decode("utf-8")
        json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return "not_json"
    if "\\u0000" in raw:
        return "not_json"
    return None


def _replay_headers(letter: DeadLetterItem) -> dict[str, str]:
    kept = {k: str(v) for k, v in letter.headers.items() if k not in _DROPPED_HEADERS}
    return tracing.inject({**kept, "replayed_from": f"dead-letter:{letter.id}"})


async def replay(
    session: AsyncSession,
    filters: Filters,
    *,
    work_topics: Sequence[str],
    limit: int,
    dry_run: bool,
    operator: Operator,
) -> ReplayResult:
    """Replay up to `limit` letters matching `filters`, oldest first (see the module
    docstring). A dry run writes nothing and locks nothing."""
    where, params = filters.where()
    lock = "" if dry_run else " FOR UPDATE SKIP LOCKED"
    rows = await session.execute(
        text(
            f"SELECT {_COLUMNS}, value FROM dead_letters WHERE {where} ORDER BY id LIMIT :lim{lock}"
        ),
        {**params, "lim": limit},
    )
    result = ReplayResult(dry_run=dry_run)
    for letter in [DeadLetterItem(**dict(r._mapping)) for r in rows]:
        reason = skip_reason(letter, work_topics)
        if reason is not None:
            result.skipped[reason] += 1
        if dry_run:
            if reason is None:
                result.replayed.append((letter, None))
            continue
        outbox_id = None
        if reason is None:
            outbox_id = await outbox.enqueue_raw(
                session,
                letter.original_topic,
                letter.key,
                letter.value or b"",
                _replay_headers(letter),
            )
            result.replayed.append((letter, outbox_id))
        await record_action(
            session,
            actor=operator.actor,
            action=REPLAY_ACTION,
            target={"dead_letter_id": letter.id, "original_topic": letter.original_topic},
            outcome="replayed" if reason is None else f"skipped_{reason}",
            operator_key_id=operator.key_id,
            details={
                "key": letter.key,
                "error_code": letter.error_code,
                "outbox_id": outbox_id,
                "filters": filters.summary(),
            },
            request_id=operator.request_id,
        )
    if result.replayed and not dry_run:
        await session.execute(
            text(
                "UPDATE dead_letters SET replayed_at = now(), replay_count = replay_count + 1 "
                "WHERE id = ANY(CAST(:ids AS bigint[]))"
            ),
            {"ids": [letter.id for letter, _ in result.replayed]},
        )
    return result


@dataclass(frozen=True)
class Totals:
    """Dead letters recorded by every worker: all, not yet replayed, in the last hour."""

    total: int
    unreplayed: int
    last_hour: int


_TOTALS = text(
    "SELECT count(*) AS total, count(*) FILTER (WHERE replayed_at IS NULL) AS unreplayed, "
    "count(*) FILTER (WHERE at > now() - interval '1 hour') AS last_hour FROM dead_letters"
)


async def totals(session: AsyncSession) -> Totals:
    """One aggregate over the table (dead letters are rare; monitoring views cache it)."""
    row = (await session.execute(_TOTALS)).one()
    return Totals(
        total=int(row.total), unreplayed=int(row.unreplayed), last_hour=int(row.last_hour)
    )
