"""The operation job type: one `operations` row per operation, keyed by its id."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table

from nexus.jobs.machine import JobType
from nexus.messaging.messages import OperationRequested
from nexus.operations.models import Operation

TABLE: Table = Operation.__table__  # type: ignore[assignment]
JOB = JobType(name="operation", table=TABLE, key_columns=("id",))


def request_message(row: Any) -> OperationRequested:
    """The message naming the operation of `row` (outbox at creation, scheduler later)."""
    return OperationRequested(
        operation_id=row.id, request_id=row.request_id, correlation_id=row.correlation_id
    )
