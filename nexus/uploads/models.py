"""Storage bookkeeping: per-user usage (the quota) and files waiting to be deleted."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Identity, Text, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from nexus.db.base import Base, created_at, updated_at


class StorageUsage(Base):
    """Declared bytes of a user's uploads (kept files and uploads in flight), SPEC §3
    "per-user storage usage". Charged at upload init in the init's transaction (a guarded
    upsert, so concurrent inits cannot overshoot the quota); given back when the file's
    `media_file` row is deleted (trigger `media_file_deleted`)."""

    __tablename__ = "storage_usage"
    __table_args__ = (CheckConstraint("bytes >= 0", name="bytes_non_negative"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default=text("0"))
    updated_at: Mapped[datetime] = updated_at()


class StorageDeletion(Base):
    """A stored file whose `media_file` row was deleted (its media deleted, merged or its
    upload refused): written by the `media_file_deleted` trigger in that transaction, so
    only committed deletions are seen; the agents delete the file, then the row."""

    __tablename__ = "storage_deletions"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    storage_path: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = created_at()
