"""job_cancelled: operator cancel, a terminal `cancelled` status on every job table

Revision ID: 0016
Revises: 0013
Create Date: 2026-12-01 14:10:00+00:00

Widens each job table's `status` and `finished_iff_terminal` CHECKs (SPEC §10 "Cancel and
retention"). Downgrade turns cancelled jobs into failed ones (`E_CANCELLED` kept as their
last error) so the narrower CHECKs hold again.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("ingest_jobs", "default_library_backfill_jobs", "operations")


def _replace(table: str, states: str) -> None:
    op.drop_constraint(op.f(f"ck_{table}_status"), table, type_="check")
    op.drop_constraint(op.f(f"ck_{table}_finished_iff_terminal"), table, type_="check")
    op.create_check_constraint(
        op.f(f"ck_{table}_status"), table, f"status IN ('pending', 'running', {states})"
    )
    op.create_check_constraint(
        op.f(f"ck_{table}_finished_iff_terminal"),
        table,
        f"(finished_at IS NOT NULL) = (status IN ({states}))",
    )


def upgrade() -> None:
    for table in _TABLES:
        _replace(table, "'completed', 'failed', 'cancelled'")


def downgrade() -> None:
    for table in _TABLES:
        op.execute(
            f"UPDATE {table} SET status = 'failed', "
            "last_error_code = coalesce(last_error_code, 'E_CANCELLED') "
            "WHERE status = 'cancelled'"
        )
        _replace(table, "'completed', 'failed'")
