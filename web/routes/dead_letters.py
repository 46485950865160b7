"""Operator routes for dead letters (SPEC §10 "Dead letters"): list, show, replay.

Guards: viewer lists and shows, admin replays (the guard runs before query/body
validation). `topic` filters take the full topic name or its short name (`backfill`).
A replay is a dry run unless `dry_run: false`; a real one goes through the outbox in one
transaction with the letters' replay marks and one `operator_actions` row per letter
(`dead_letter.replay`), see nexus.deadletters.service.
"""

from __future__ import annotations

import base64
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from quart import Blueprint, g
from quart_schema import validate_request, validate_response

from nexus.deadletters import service as deadletters
from nexus.errors import NotFound
from nexus.messaging.topics import Topics
from nexus.operators.roles import Role
from nexus.operators.service import OperatorIdentity
from web.auth import operator_required
from web.envelope import Data
from web.openapi import raises
from web.pagination import BY_ID, ListQuery, Paged, after_id, list_page
from web.querystring import validate_querystring
from web.state import nexus_state
from web.uow import unit_of_work

bp = Blueprint("dead_letters", __name__, url_prefix="/internal")

ErrorCode = Literal[
    "E_MESSAGE_INVALID", "E_MESSAGE_UNKNOWN", "E_HANDLER_FAILED", "E_DEPENDENCY_UNAVAILABLE"
]
LetterId = Annotated[int, Field(ge=1, lt=2**63)]
SAMPLE_SIZE = 20
MAX_REPLAY = 1000


class FilterFields(BaseModel):
    # Kafka topic names are ASCII letters, digits, `.`, `_` and `-` (a NUL would fail the query).
    topic: str | None = Field(
        default=None, min_length=1, max_length=255, pattern=r"^[A-Za-z0-9._-]+$"
    )
    error_code: ErrorCode | None = None
    replayed: bool | None = None

    def filters(self, ids: list[int] | None = None) -> deadletters.Filters:
        topics = Topics.from_settings(nexus_state().settings)
        return deadletters.Filters(
            topic=topics.full_name(self.topic) if self.topic else None,
            error_code=self.error_code,
            replayed=self.replayed,
            ids=ids,
        )


class DeadLettersQuery(FilterFields, ListQuery):
    pass


# The API's schema name for the service's row (nexus.db.types.Record).
class DeadLetterOut(deadletters.DeadLetter):
    pass


class DeadLetterDetailOut(DeadLetterOut):
    value: str  # base64 of the original bytes


@bp.get("/dead-letters")
@raises()
@validate_response(Paged[DeadLetterOut])
@operator_required(Role.VIEWER)
@validate_querystring(DeadLettersQuery)
async def list_dead_letters(
    query_args: DeadLettersQuery, operator: OperatorIdentity
) -> Paged[DeadLetterOut]:
    """Dead letters newest first, filtered by topic, error code and whether they were
    replayed. Order: 401/403 key → 400 query/limit/cursor."""
    del operator
    return await list_page(
        query_args,
        "dead-letters",
        BY_ID,
        lambda session, after: deadletters.list_letters(
            session, query_args.filters(), limit=query_args.limit, after_id=after_id(after)
        ),
        DeadLetterOut.model_validate,
    )


@bp.get("/dead-letters/<id:letter_id>")
@raises("E_NOT_FOUND")
@validate_response(Data[DeadLetterDetailOut])
@operator_required(Role.VIEWER)
async def show_dead_letter(letter_id: int, operator: OperatorIdentity) -> Data[DeadLetterDetailOut]:
    """One letter with its value (base64). 404 E_NOT_FOUND when there is none."""
    del operator
    async with unit_of_work() as uow:
        item = await deadletters.get_letter(uow.session, letter_id)
    if item is None:
        raise NotFound(f"no dead letter {letter_id}")
    value = base64.b64encode(item.value or b"").decode()
    return Data(data=DeadLetterDetailOut(**item.model_dump(exclude={"value"}), value=value))


class ReplayIn(FilterFields):
    # A misspelt filter must not widen the selection.
    model_config = ConfigDict(extra="forbid")

    ids: list[LetterId] | None = Field(default=None, min_length=1, max_length=MAX_REPLAY)
    # Letters already replayed are left alone unless asked for (`replayed: true` or null).
    replayed: bool | None = False
    limit: int = Field(default=100, ge=1, le=MAX_REPLAY)
    dry_run: bool = True


class ReplayedOut(BaseModel):
    id: int
    original_topic: str
    key: str | None
    error_code: str
    outbox_id: int | None


class ReplayOut(BaseModel):
    dry_run: bool
    # Letters sent (or, in a dry run, that would be sent).
    count: int
    skipped: dict[str, int]
    # In a dry run at most SAMPLE_SIZE of them; otherwise every one.
    letters: list[ReplayedOut]


@bp.post("/dead-letters/replay")
@raises()
@validate_response(Data[ReplayOut])
@operator_required(Role.ADMIN)
@validate_request(ReplayIn)
async def replay_dead_letters(data: ReplayIn, operator: OperatorIdentity) -> Data[ReplayOut]:
    """Replay up to `limit` matching letters, oldest first, to their original work topics.

    Order: admin key (401/403) → body (400). `dry_run` (the default) answers what would be
    sent and skipped and writes nothing."""
    topics = Topics.from_settings(nexus_state().settings)
    async with unit_of_work() as uow:
        result = await deadletters.replay(
            uow.session,
            data.filters(ids=data.ids),
            work_topics=topics.work(),
            limit=data.limit,
            dry_run=data.dry_run,
            operator=deadletters.Operator(
                actor=operator.name, key_id=operator.key_id, request_id=g.request_id
            ),
        )
    shown = result.replayed[:SAMPLE_SIZE] if data.dry_run else result.replayed
    letters = [
        ReplayedOut(
            id=item.id,
            original_topic=item.original_topic,
            key=item.key,
            error_code=item.error_code,
            outbox_id=outbox_id,
        )
        for item, outbox_id in shown
    ]
    out = ReplayOut(
        dry_run=data.dry_run,
        count=len(result.replayed),
        skipped=dict(result.skipped),
        letters=letters,
    )
    return Data(data=out)
