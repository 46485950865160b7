from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from nexus.db.base import Base, created_at, tstz, uuid_pk


class OperatorKey(Base):
    __tablename__ = "operator_keys"
    __table_args__ = (
        CheckConstraint("role IN ('viewer', 'operator', 'admin')", name="role"),
        CheckConstraint("char_length(name) BETWEEN 1 AND 100", name="name_length"),
        Index("uix_operator_keys_key_hash", "key_hash", unique=True),
        Index("uix_operator_keys_name", "name", unique=True),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(128), nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[datetime] = created_at()
    disabled_at: Mapped[datetime | None] = tstz()
    last_used_at: Mapped[datetime | None] = tstz()


class OperatorAction(Base):
    """Audit row for every operator action (HTTP, CLI or requeue topic) and every refused
    operator request; one hash chain over the table (`prev_hash`, `hash`: set by the
    `operator_actions_chain` trigger, migration 0013; `nexus.audit`)."""

    __tablename__ = "operator_actions"
    __table_args__ = (
        Index("ix_operator_actions_at", "at"),
        Index("ix_operator_actions_target", "target", postgresql_using="gin"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    operator_key_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("operator_keys.id", ondelete="SET NULL")
    )
    actor: Mapped[str] = mapped_column(String(255), nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    target: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    outcome: Mapped[str] = mapped_column(String(64), nullable=False)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    request_id: Mapped[str | None] = mapped_column(String(128))
    at: Mapped[datetime] = created_at()
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), nullable=False)


class OperatorRateLimitWindow(Base):
    """Fixed-window request counters per operator key (`nexus.ratelimit`)."""

    __tablename__ = "operator_rate_limit_windows"
    __table_args__ = (
        PrimaryKeyConstraint("operator_key_id", "bucket", "window_start"),
        CheckConstraint("hits >= 0", name="hits_non_negative"),
        Index("ix_operator_rate_limit_windows_window_start", "window_start"),
    )

    operator_key_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("operator_keys.id", ondelete="CASCADE")
    )
    bucket: Mapped[str] = mapped_column(String(64))
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    hits: Mapped[int] = mapped_column(Integer, nullable=False)
