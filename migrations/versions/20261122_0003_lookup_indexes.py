"""indexes for library media pagination, media removal from a source, jobs by source

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 03:25:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_library_media_library_id_created_at_media_id",
        "library_media",
        ["library_id", "created_at", "media_id"],
    )
    op.create_index(
        "ix_default_library_closure_edges_source_media",
        "default_library_closure_edges",
        ["source_library_id", "media_id"],
    )
    op.create_index(
        "ix_default_library_backfill_jobs_source_user",
        "default_library_backfill_jobs",
        ["source_library_id", "user_id"],
    )


def downgrade() -> None:
    op.drop_index(
        "ix_default_library_backfill_jobs_source_user", table_name="default_library_backfill_jobs"
    )
    op.drop_index(
        "ix_default_library_closure_edges_source_media", table_name="default_library_closure_edges"
    )
    op.drop_index("ix_library_media_library_id_created_at_media_id", table_name="library_media")
