from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, PrimaryKeyConstraint
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from nexus.db.base import Base, created_at
from nexus.jobs.models import JobColumns


def _fk(target: str) -> Mapped[uuid.UUID]:
    return mapped_column(UUID(as_uuid=True), ForeignKey(target, ondelete="CASCADE"))


class DefaultLibraryIntrinsic(Base):
    """m is in d because its user put it there directly."""

    __tablename__ = "default_library_intrinsics"
    __table_args__ = (PrimaryKeyConstraint("default_library_id", "media_id"),)

    default_library_id: Mapped[uuid.UUID] = _fk("libraries.id")
    media_id: Mapped[uuid.UUID] = _fk("media.id")
    created_at: Mapped[datetime] = created_at()


class ClosureEdge(Base):
    """m is in d because d's user is a member of non-default source library S holding m."""

    __tablename__ = "default_library_closure_edges"
    __table_args__ = (
        PrimaryKeyConstraint("default_library_id", "media_id", "source_library_id"),
        Index(
            "ix_default_library_closure_edges_source_default_media",
            "source_library_id",
            "default_library_id",
            "media_id",
        ),
        Index(
            "ix_default_library_closure_edges_default_media",
            "default_library_id",
            "media_id",
        ),
        # Removing one media from S deletes its edges (*, m, S).
        Index("ix_default_library_closure_edges_source_media", "source_library_id", "media_id"),
    )

    default_library_id: Mapped[uuid.UUID] = _fk("libraries.id")
    media_id: Mapped[uuid.UUID] = _fk("media.id")
    source_library_id: Mapped[uuid.UUID] = _fk("libraries.id")
    created_at: Mapped[datetime] = created_at()


class BackfillJob(JobColumns, Base):
    __tablename__ = "default_library_backfill_jobs"
    __table_args__ = (
        PrimaryKeyConstraint("default_library_id", "source_library_id", "user_id"),
        # Member removal and the source library's cascade find jobs by source.
        Index("ix_default_library_backfill_jobs_source_user", "source_library_id", "user_id"),
        *JobColumns.job_constraints("default_library_backfill_jobs"),
    )

    default_library_id: Mapped[uuid.UUID] = _fk("libraries.id")
    source_library_id: Mapped[uuid.UUID] = _fk("libraries.id")
    user_id: Mapped[uuid.UUID] = _fk("users.id")
