"""Job columns shared by every job table, the `job_events` ledger and the `outbox`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Identity,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from nexus.db.base import Base, created_at, tstz, updated_at


class JobColumns:
    """Status, attempts, schedule, fenced lease and diagnostics of one job row."""

    status: Mapped[str] = mapped_column(
        String(16), nullable=False, server_default=text("'pending'")
    )
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    # When a message naming this job was last written (outbox) or re-sent by the scheduler;
    # a pending job that is due and has no message since it became due gets one.
    dispatched_at: Mapped[datetime | None] = tstz()
    lease_token: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None] = tstz()
    last_error_code: Mapped[str | None] = mapped_column(String(64))
    last_error_message: Mapped[str | None] = mapped_column(String(1000))
    request_id: Mapped[str | None] = mapped_column(String(128))
    correlation_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()
    finished_at: Mapped[datetime | None] = tstz()

    @classmethod
    def job_constraints(cls, table: str) -> tuple[Any, ...]:
        return (
            CheckConstraint(
                "status IN ('pending', 'running', 'completed', 'failed')", name="status"
            ),
            CheckConstraint("attempts >= 0", name="attempts_non_negative"),
            CheckConstraint(
                "(finished_at IS NOT NULL) = (status IN ('completed', 'failed'))",
                name="finished_iff_terminal",
            ),
            CheckConstraint(
                "(status = 'running') = (lease_token IS NOT NULL AND lease_expires_at IS NOT NULL)",
                name="lease_iff_running",
            ),
            Index(f"ix_{table}_status_next_attempt_at", "status", "next_attempt_at"),
            Index(f"ix_{table}_updated_at", "updated_at"),
        )


class JobEvent(Base):
    """Append-only ledger of every job transition, hash-chained per job key (`prev_hash`,
    `hash`: set by the `job_events_chain` trigger, migration 0013; `nexus.audit`)."""

    __tablename__ = "job_events"
    __table_args__ = (
        # The chain of one job key in order: the trigger's head lookup and `audit verify`.
        Index("ix_job_events_job_type_job_key_id", "job_type", "job_key", "id"),
        Index("ix_job_events_at", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    job_type: Mapped[str] = mapped_column(String(32), nullable=False)
    job_key: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16), nullable=False)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    actor: Mapped[str] = mapped_column(String(255), nullable=False)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(String(1000))
    request_id: Mapped[str | None] = mapped_column(String(128))
    correlation_id: Mapped[str | None] = mapped_column(String(128))
    at: Mapped[datetime] = created_at()
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), nullable=False)


class OutboxRow(Base):
    """A message written in the same transaction as the state it announces."""

    __tablename__ = "outbox"
    __table_args__ = (
        # The relay's work list: unpublished rows that are not parked.
        Index(
            "ix_outbox_unpublished",
            "id",
            postgresql_where=text("published_at IS NULL AND parked_at IS NULL"),
        ),
        Index("ix_outbox_parked", "id", postgresql_where=text("parked_at IS NOT NULL")),
        Index("ix_outbox_key", "key"),
        CheckConstraint("publish_attempts >= 0", name="publish_attempts_non_negative"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    topic: Mapped[str] = mapped_column(String(255), nullable=False)
    key: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    headers: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    created_at: Mapped[datetime] = created_at()
    published_at: Mapped[datetime | None] = tstz()
    publish_attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(String(1000))
    # Back-off of a row whose publish failed; the relay skips it until then.
    next_attempt_at: Mapped[datetime | None] = tstz()
    # Set after NEXUS_OUTBOX_MAX_ATTEMPTS rejections: the relay leaves the row to operators.
    parked_at: Mapped[datetime | None] = tstz()

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:  # noqa: N805
        return {"eager_defaults": True}
