"""job dispatched_at: when a message naming the job was last sent (scheduler re-drive)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 03:10:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("default_library_backfill_jobs", "ingest_jobs")


def upgrade() -> None:
    for table in _TABLES:
        op.add_column(table, sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    for table in _TABLES:
        op.drop_column(table, "dispatched_at")
