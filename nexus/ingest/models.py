from __future__ import annotations

import uuid

from sqlalchemy import ForeignKey
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from nexus.db.base import Base
from nexus.jobs.models import JobColumns


class IngestJob(JobColumns, Base):
    """Processing of one media; `media` keeps only the user-visible state."""

    __tablename__ = "ingest_jobs"
    __table_args__ = JobColumns.job_constraints("ingest_jobs")

    media_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("media.id", ondelete="CASCADE"), primary_key=True
    )
