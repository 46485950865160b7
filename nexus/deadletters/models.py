from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Identity,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from nexus.db.base import Base, created_at, tstz


class DeadLetterRow(Base):
    """One message an agent could not process, with where it came from and why.

    Postgres is the record operators list and replay from (the dev/test broker keeps
    messages in memory only). A message is recorded once per (topic, partition, offset):
    a redelivery of the same offset updates the error instead of adding a row; a replayed
    message that fails again has a new offset, so it is a new row.
    """

    __tablename__ = "dead_letters"
    __table_args__ = (
        UniqueConstraint("original_topic", "partition", "offset"),
        CheckConstraint("replay_count >= 0", name="replay_count_non_negative"),
        Index("ix_dead_letters_original_topic_id", "original_topic", "id"),
        Index("ix_dead_letters_error_code_id", "error_code", "id"),
        Index("ix_dead_letters_unreplayed", "id", postgresql_where=text("replayed_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    original_topic: Mapped[str] = mapped_column(String(255), nullable=False)
    partition: Mapped[int | None] = mapped_column(Integer)
    offset: Mapped[int | None] = mapped_column(BigInteger)
    key: Mapped[str | None] = mapped_column(Text)
    value: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    headers: Mapped[dict[str, Any]] = mapped_column(
        JSONB, nullable=False, server_default=text("'{}'::jsonb")
    )
    error_code: Mapped[str] = mapped_column(String(64), nullable=False)
    error_message: Mapped[str] = mapped_column(String(2000), nullable=False)
    worker_id: Mapped[str | None] = mapped_column(String(255))
    at: Mapped[datetime] = created_at()
    replayed_at: Mapped[datetime | None] = tstz()
    replay_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("0"))
