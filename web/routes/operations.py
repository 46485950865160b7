"""Background operations (bulk requeue and later ones): progress and result.

`GET /internal/operations/{id}` (viewer): the operation as its row says now. Order:
operator key (401/403) → malformed id (400) → unknown id (404 E_NOT_FOUND).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from quart import Blueprint
from quart_schema import validate_response

from nexus.errors import NotFound
from nexus.operations import service
from nexus.operators.roles import Role
from nexus.operators.service import OperatorIdentity
from web.auth import operator_required
from web.envelope import Data
from web.openapi import raises
from web.uow import unit_of_work

bp = Blueprint("operations", __name__, url_prefix="/internal")


class OperationErrorOut(BaseModel):
    code: str
    message: str | None


class OperationOut(BaseModel):
    """`progress`: counters so far (saved once per step); `result`: the final counters,
    set when `status` is completed; `error`: the last attempt's failure (a pending
    operation with an error is waiting for its retry; a failed one gave up)."""

    id: uuid.UUID
    kind: str
    status: str
    params: dict[str, Any]
    progress: dict[str, Any]
    result: dict[str, Any] | None
    error: OperationErrorOut | None
    attempts: int
    requested_by: str
    request_id: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


@bp.get("/operations/<uuid:operation_id>")
@raises("E_NOT_FOUND")
@validate_response(Data[OperationOut])
@operator_required(Role.VIEWER)
async def get_operation(operation_id: uuid.UUID, operator: OperatorIdentity) -> Data[OperationOut]:
    del operator
    async with unit_of_work() as uow:
        operation = await service.get(uow.session, operation_id)
    if operation is None:
        raise NotFound("no operation with this id")
    return Data(data=OperationOut.model_validate(operation.public()))
