"""dead_letters: messages the agents could not process, listed and replayed (SPEC §10)

Revision ID: 0014
Revises: 0012
Create Date: 2026-12-01 14:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("original_topic", sa.String(255), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=True),
        sa.Column("offset", sa.BigInteger(), nullable=True),
        sa.Column("key", sa.Text(), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column(
            "headers", postgresql.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")
        ),
        sa.Column("error_code", sa.String(64), nullable=False),
        sa.Column("error_message", sa.String(2000), nullable=False),
        sa.Column("worker_id", sa.String(255), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("replay_count", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.CheckConstraint(
            "replay_count >= 0", name=op.f("ck_dead_letters_replay_count_non_negative")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
        sa.UniqueConstraint(
            "original_topic",
            "partition",
            "offset",
            name=op.f("uq_dead_letters_original_topic_partition_offset"),
        ),
    )
    op.create_index(
        "ix_dead_letters_original_topic_id", "dead_letters", ["original_topic", "id"]
    )
    op.create_index("ix_dead_letters_error_code_id", "dead_letters", ["error_code", "id"])
    op.create_index(
        "ix_dead_letters_unreplayed",
        "dead_letters",
        ["id"],
        postgresql_where=sa.text("replayed_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_dead_letters_unreplayed", table_name="dead_letters")
    op.drop_index("ix_dead_letters_error_code_id", table_name="dead_letters")
    op.drop_index("ix_dead_letters_original_topic_id", table_name="dead_letters")
    op.drop_table("dead_letters")
