from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from nexus.db.base import Base, created_at, tstz, updated_at, uuid_pk
from nexus.media.states import FailureStage, MediaKind, ProcessingStatus

processing_status_enum = Enum(
    ProcessingStatus,
    name="processing_status",
    values_callable=lambda e: [m.value for m in e],
)
failure_stage_enum = Enum(
    FailureStage,
    name="failure_stage",
    values_callable=lambda e: [m.value for m in e],
)
_KINDS = ", ".join(f"'{k.value}'" for k in MediaKind)


class Media(Base):
    __tablename__ = "media"
    __table_args__ = (
        CheckConstraint(f"kind IN ({_KINDS})", name="kind"),
        CheckConstraint("processing_attempts >= 0", name="processing_attempts_non_negative"),
        Index(
            "uix_media_canonical_url",
            "kind",
            "canonical_url",
            unique=True,
            postgresql_where=text("canonical_url IS NOT NULL"),
        ),
        Index(
            "uix_media_file_sha256",
            "created_by_user_id",
            "kind",
            "file_sha256",
            unique=True,
            postgresql_where=text("file_sha256 IS NOT NULL AND kind IN ('pdf', 'epub')"),
        ),
        Index("ix_media_created_by_user_id", "created_by_user_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    title: Mapped[str | None] = mapped_column(Text)
    canonical_source_url: Mapped[str | None] = mapped_column(String(2048))
    processing_status: Mapped[ProcessingStatus] = mapped_column(
        processing_status_enum, nullable=False, server_default=text("'pending'")
    )
    failure_stage: Mapped[FailureStage | None] = mapped_column(failure_stage_enum)
    last_error_code: Mapped[str | None] = mapped_column(String(64))
    last_error_message: Mapped[str | None] = mapped_column(String(1000))
    processing_attempts: Mapped[int] = mapped_column(
        Integer, nullable=False, server_default=text("0")
    )
    processing_started_at: Mapped[datetime | None] = tstz()
    processing_completed_at: Mapped[datetime | None] = tstz()
    failed_at: Mapped[datetime | None] = tstz()
    requested_url: Mapped[str | None] = mapped_column(String(2048))
    canonical_url: Mapped[str | None] = mapped_column(String(2048))
    file_sha256: Mapped[str | None] = mapped_column(String(64))
    external_playback_url: Mapped[str | None] = mapped_column(String(2048))
    provider: Mapped[str | None] = mapped_column(String(64))
    provider_id: Mapped[str | None] = mapped_column(String(255))
    created_by_user_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = updated_at()


class MediaFile(Base):
    """The stored file of a media. Deleting the row queues the file's deletion from storage
    and gives the charged bytes back to `charged_user_id`'s quota (trigger
    `media_file_deleted`, migration 0013; docs/uploads.md)."""

    __tablename__ = "media_file"
    __table_args__ = (CheckConstraint("size_bytes >= 0", name="size_non_negative"),)

    media_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("media.id", ondelete="CASCADE"), primary_key=True
    )
    storage_path: Mapped[str] = mapped_column(Text, nullable=False)
    content_type: Mapped[str] = mapped_column(String(255), nullable=False)
    size_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # The user whose storage quota this file counts against (uploads; NULL for fetched files).
    charged_user_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("users.id", ondelete="SET NULL")
    )


class Fragment(Base):
    __tablename__ = "fragments"
    __table_args__ = (
        UniqueConstraint("media_id", "idx"),
        CheckConstraint("idx >= 0", name="idx_non_negative"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    media_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("media.id", ondelete="CASCADE"), nullable=False
    )
    idx: Mapped[int] = mapped_column(Integer, nullable=False)
    canonical_text: Mapped[str] = mapped_column(Text, nullable=False)
    html_sanitized: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = created_at()


class MediaMerge(Base):
    """The loser of a canonical-URL merge points at its winner (no FK: the loser is gone)."""

    __tablename__ = "media_merges"
    __table_args__ = (
        CheckConstraint("from_media_id <> into_media_id", name="not_self"),
        Index("ix_media_merges_into_media_id", "into_media_id"),
    )

    from_media_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    into_media_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("media.id", ondelete="CASCADE"), nullable=False
    )
    merged_at: Mapped[datetime] = created_at()
