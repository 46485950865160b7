from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Index, Integer, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from nexus.db.base import Base, created_at


class Worker(Base):
    """One agents worker process (SPEC §10 "Workers"): registered at start, heartbeating
    while it runs; the leader's rescue treats the leases of a worker that missed three
    beats as lost."""

    __tablename__ = "workers"
    __table_args__ = (
        CheckConstraint("status IN ('running', 'draining', 'stopped')", name="status"),
        Index("ix_workers_last_heartbeat_at", "last_heartbeat_at"),
    )

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    host: Mapped[str] = mapped_column(String(255), nullable=False)
    pid: Mapped[int] = mapped_column(Integer, nullable=False)
    started_at: Mapped[datetime] = created_at()
    last_heartbeat_at: Mapped[datetime] = created_at()
    status: Mapped[str] = mapped_column(String(16), nullable=False, server_default="running")
    assigned: Mapped[list[Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'[]'::jsonb")
    )
    version: Mapped[str] = mapped_column(String(64), nullable=False)
