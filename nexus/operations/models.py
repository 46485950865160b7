"""The `operations` table: one row per background operator operation, which is also its job.

The row carries the job columns (status pending|running|completed|failed, attempts, fenced
lease, `last_error_code`/`last_error_message`, request and correlation ids, timestamps), so
the shared job machine claims, completes, retries and rescues it like any other job. On top:
what was asked (`kind`, `params`, who asked), what has been done so far (`progress`, public
counters), where a re-run resumes (`checkpoint`, internal) and the final `result`.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from nexus.db.base import Base, uuid_pk
from nexus.jobs.models import JobColumns


def _jsonb_object() -> Mapped[dict[str, Any]]:
    return mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))


class Operation(JobColumns, Base):
    __tablename__ = "operations"
    __table_args__ = (
        *JobColumns.job_constraints("operations"),
        # Written by the completion only; a failed operation keeps its progress instead.
        CheckConstraint("result IS NULL OR status = 'completed'", name="result_only_completed"),
        Index("ix_operations_kind_created_at", "kind", "created_at"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    kind: Mapped[str] = mapped_column(String(64), nullable=False)
    params: Mapped[dict[str, Any]] = _jsonb_object()
    progress: Mapped[dict[str, Any]] = _jsonb_object()
    checkpoint: Mapped[dict[str, Any]] = _jsonb_object()
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    requested_by: Mapped[str] = mapped_column(String(255), nullable=False)
    operator_key_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("operator_keys.id", ondelete="SET NULL")
    )
