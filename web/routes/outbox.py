"""Operator routes for the outbox (SPEC §10 "Outbox"): list rows by status (parked by
default) and give a parked row a fresh start.

Guards: viewer lists, operator retries (the guard runs before query validation). Every
retry, refused ones included, is written to `operator_actions` (action `outbox.retry`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel
from quart import Blueprint
from quart_schema import validate_response

from nexus.jobs import relay
from nexus.operators.roles import Role
from nexus.operators.service import OperatorIdentity
from web.audit import Audit, audited_retry
from web.auth import operator_required
from web.envelope import Data
from web.openapi import raises
from web.pagination import ListQuery, Paged, after_key, page_of
from web.querystring import validate_querystring
from web.uow import unit_of_work

bp = Blueprint("outbox", __name__, url_prefix="/internal")


class OutboxQuery(ListQuery):
    status: Literal["parked", "unpublished", "published"] = "parked"


class OutboxRowOut(BaseModel):
    id: int
    topic: str
    key: str | None
    created_at: datetime
    published_at: datetime | None
    publish_attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    parked_at: datetime | None


class OutboxRetryOut(BaseModel):
    id: int
    # False when the row was not parked (already published, or still in the relay's hands).
    retried: bool


@bp.get("/outbox")
@raises()
@validate_response(Paged[OutboxRowOut])
@operator_required(Role.VIEWER)
@validate_querystring(OutboxQuery)
async def list_outbox(query_args: OutboxQuery, operator: OperatorIdentity) -> Paged[OutboxRowOut]:
    """Outbox rows of one status in id order. Order: 401/403 key → 400 query/cursor."""
    del operator
    scope = f"outbox:{query_args.status}"
    after = after_key(query_args.cursor, scope, (int,))
    async with unit_of_work() as uow:
        rows = await relay.list_rows(
            uow.session,
            status=query_args.status,
            limit=query_args.limit,
            after_id=int(after[0]) if after else None,
        )
    items, page = page_of(rows, query_args.limit, scope, lambda r: (r.id,))
    return Paged(
        data=[OutboxRowOut.model_validate(r, from_attributes=True) for r in items], page=page
    )


@bp.post("/outbox/<id:row_id>/retry")
@raises("E_NOT_FOUND")
@validate_response(Data[OutboxRetryOut])
@operator_required(Role.OPERATOR)
async def retry_outbox_row(row_id: int, operator: OperatorIdentity) -> Data[OutboxRetryOut]:
    """Unpark a row: attempts back to 0, due now; the relay publishes it on its next tick.
    Order: 401/403 key → 404 E_NOT_FOUND → 200 (`retried: false` when it was not parked)."""
    retried = await audited_retry(
        Audit(operator, "outbox.retry", {"outbox_id": row_id}),
        lambda session: relay.retry_parked(session, row_id),
        not_retried="not_parked",
        missing=f"no outbox row {row_id}",
    )
    return Data(data=OutboxRetryOut(id=row_id, retried=retried))
