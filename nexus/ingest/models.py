from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from nexus.db.base import Base, created_at, tstz
from nexus.jobs.models import JobColumns


class IngestJob(JobColumns, Base):
    """Processing of one media; `media` keeps only the user-visible state."""

    __tablename__ = "ingest_jobs"
    __table_args__ = JobColumns.job_constraints("ingest_jobs")

    media_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("media.id", ondelete="CASCADE"), primary_key=True
    )


class MediaUpload(Base):
    """The upload of a media's file through its pre-signed URL (docs/uploads.md).

    `nonce` is the one the current upload token was signed with: the token is usable while
    `uploaded_at` is NULL and no other upload holds it (`claimed_at`); the first upload that
    completes sets `uploaded_at`, which spends the token for good. An upload still not
    completed after its URL lifetime plus a grace is removed with its media by the agents."""

    __tablename__ = "media_uploads"

    media_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("media.id", ondelete="CASCADE"), primary_key=True
    )
    nonce: Mapped[str] = mapped_column(String(64), nullable=False)
    filename: Mapped[str] = mapped_column(String(255), nullable=False)
    claimed_at: Mapped[datetime | None] = tstz()
    uploaded_at: Mapped[datetime | None] = tstz()
    # Set when the stored bytes passed the type check (magic bytes) at ingest: only then can
    # the file be downloaded or the media shared.
    verified_at: Mapped[datetime | None] = tstz()
    created_at: Mapped[datetime] = created_at()
