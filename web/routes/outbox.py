"""Operator routes for the outbox (SPEC §10 "Outbox"): list rows by status (parked by
default) and give a parked row a fresh start.

Guards: viewer lists, operator retries (the guard runs before query validation). Every
retry, refused ones included, is written to `operator_actions` (action `outbox.retry`).
"""

from __future__ import annotations

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
from web.pagination import BY_ID, ListQuery, Paged, after_id, list_page
from web.querystring import validate_querystring

bp = Blueprint("outbox", __name__, url_prefix="/internal")


class OutboxQuery(ListQuery):
    status: Literal["parked", "unpublished", "published"] = "parked"


# The API's schema name for the service's row (nexus.db.types.Record).
class OutboxRowOut(relay.OutboxItem):
    pass


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
    return await list_page(
        query_args,
        f"outbox:{query_args.status}",
        BY_ID,
        lambda session, after: relay.list_rows(
            session, status=query_args.status, limit=query_args.limit, after_id=after_id(after)
        ),
        OutboxRowOut.model_validate,
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
