"""operations: background operator operations (bulk requeue), each one a job row

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 13:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EMPTY = sa.text("'{}'::jsonb")


def _tstz(name: str, *, now: bool = False) -> sa.Column:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        server_default=sa.text("now()") if now else None,
        nullable=not now,
    )


def upgrade() -> None:
    op.create_table(
        "operations",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("params", postgresql.JSONB(), server_default=_EMPTY, nullable=False),
        sa.Column("progress", postgresql.JSONB(), server_default=_EMPTY, nullable=False),
        sa.Column("checkpoint", postgresql.JSONB(), server_default=_EMPTY, nullable=False),
        sa.Column("result", postgresql.JSONB(), nullable=True),
        sa.Column("requested_by", sa.String(length=255), nullable=False),
        sa.Column("operator_key_id", sa.UUID(), nullable=True),
        sa.Column(
            "status", sa.String(length=16), server_default=sa.text("'pending'"), nullable=False
        ),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        _tstz("next_attempt_at", now=True),
        _tstz("dispatched_at"),
        sa.Column("lease_token", sa.UUID(), nullable=True),
        sa.Column("lease_owner", sa.String(length=255), nullable=True),
        _tstz("lease_expires_at"),
        sa.Column("last_error_code", sa.String(length=64), nullable=True),
        sa.Column("last_error_message", sa.String(length=1000), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("correlation_id", sa.String(length=128), nullable=True),
        _tstz("created_at", now=True),
        _tstz("updated_at", now=True),
        _tstz("finished_at"),
        sa.CheckConstraint(
            "(finished_at IS NOT NULL) = (status IN ('completed', 'failed'))",
            name=op.f("ck_operations_finished_iff_terminal"),
        ),
        sa.CheckConstraint(
            "(status = 'running') = (lease_token IS NOT NULL AND lease_expires_at IS NOT NULL)",
            name=op.f("ck_operations_lease_iff_running"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'completed', 'failed')",
            name=op.f("ck_operations_status"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_operations_attempts_non_negative")),
        sa.CheckConstraint(
            "result IS NULL OR status = 'completed'",
            name=op.f("ck_operations_result_only_completed"),
        ),
        sa.ForeignKeyConstraint(
            ["operator_key_id"],
            ["operator_keys.id"],
            name=op.f("fk_operations_operator_key_id_operator_keys"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operations")),
    )
    op.create_index(
        "ix_operations_status_next_attempt_at", "operations", ["status", "next_attempt_at"]
    )
    op.create_index("ix_operations_updated_at", "operations", ["updated_at"])
    op.create_index("ix_operations_kind_created_at", "operations", ["kind", "created_at"])


def downgrade() -> None:
    op.drop_table("operations")
