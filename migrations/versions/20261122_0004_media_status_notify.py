"""media status NOTIFY: pg_notify('nexus_media', ...) on every processing_status change
and on delete (a merge), for `GET /media/{id}/events`

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 06:00:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The payload is small JSON (well under NOTIFY's 8000-byte limit). Sent at commit, in
# commit order, only for committed changes: every writer is covered, none has to remember.
_FUNCTION = """
CREATE FUNCTION nexus_media_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('nexus_media',
            json_build_object('media_id', OLD.id, 'deleted', true)::text);
        RETURN OLD;
    END IF;
    PERFORM pg_notify('nexus_media', json_build_object(
        'media_id', NEW.id,
        'processing_status', NEW.processing_status,
        'failure_stage', NEW.failure_stage,
        'last_error_code', NEW.last_error_code)::text);
    RETURN NEW;
END
$$
"""


def upgrade() -> None:
    op.execute(_FUNCTION)
    op.execute(
        "CREATE TRIGGER media_status_notify AFTER UPDATE OF processing_status ON media "
        "FOR EACH ROW WHEN (OLD.processing_status IS DISTINCT FROM NEW.processing_status) "
        "EXECUTE FUNCTION nexus_media_notify()"
    )
    op.execute(
        "CREATE TRIGGER media_delete_notify AFTER DELETE ON media "
        "FOR EACH ROW EXECUTE FUNCTION nexus_media_notify()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS media_delete_notify ON media")
    op.execute("DROP TRIGGER IF EXISTS media_status_notify ON media")
    op.execute("DROP FUNCTION IF EXISTS nexus_media_notify()")
