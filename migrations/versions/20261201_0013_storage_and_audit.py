"""storage quota, storage deletions, upload type check, operator rate limits, and
tamper-evident audit ledgers (issue #11 points 6 and 8)

- `storage_usage(user_id, bytes)`: declared bytes of each user's uploads (SPEC §3 "per-user
  storage usage"); `media_file.charged_user_id` says whose quota a file counts against.
- `storage_deletions`: files whose `media_file` row was deleted, to delete from storage
  after commit. Trigger `media_file_deleted` writes it and gives the bytes back.
- `media_uploads.verified_at`: the upload passed its type check (magic bytes).
- `operator_rate_limit_windows`: per operator key request counters.
- `operator_actions` and `job_events` get `prev_hash`/`hash`: one chain over
  `operator_actions`, one chain per job key in `job_events`, computed by BEFORE INSERT
  triggers under a transaction-level advisory lock per chain (docs/security.md). Existing
  rows are chained here, in id order, so `nexus ops audit verify` passes after upgrade.

The hash of a row is hex SHA-256 of `<table>.v1|<prev_hash or ''>|<fields>`, each field
rendered as `<characters>:<text>` (`-` for NULL), timestamps as epoch microseconds.
`nexus.audit` recomputes it in Python, independently of these functions.

Revision ID: 0013
Revises: 0015
Create Date: 2026-12-01 13:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_HELPERS = """
CREATE FUNCTION nexus_audit_field(value text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN value IS NULL THEN '-' ELSE char_length(value)::text || ':' || value END
$$
;;
CREATE FUNCTION nexus_audit_micros(at timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT (extract(epoch FROM at) * 1000000)::bigint::text
$$
;;
CREATE FUNCTION nexus_job_event_hash(e job_events) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT encode(sha256(convert_to(concat_ws('|', 'job_events.v1',
        coalesce(e.prev_hash, ''),
        nexus_audit_field(e.id::text), nexus_audit_field(e.job_type),
        nexus_audit_field(e.job_key::text), nexus_audit_field(e.from_status),
        nexus_audit_field(e.to_status), nexus_audit_field(e.attempt::text),
        nexus_audit_field(e.actor), nexus_audit_field(e.error_code),
        nexus_audit_field(e.error_message), nexus_audit_field(e.request_id),
        nexus_audit_field(e.correlation_id), nexus_audit_field(nexus_audit_micros(e.at))),
        'UTF8')), 'hex')
$$
;;
CREATE FUNCTION nexus_operator_action_hash(a operator_actions) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT encode(sha256(convert_to(concat_ws('|', 'operator_actions.v1',
        coalesce(a.prev_hash, ''),
        nexus_audit_field(a.id::text), nexus_audit_field(a.operator_key_id::text),
        nexus_audit_field(a.actor), nexus_audit_field(a.action),
        nexus_audit_field(a.target::text), nexus_audit_field(a.outcome),
        nexus_audit_field(a.details::text), nexus_audit_field(a.request_id),
        nexus_audit_field(nexus_audit_micros(a.at))),
        'UTF8')), 'hex')
$$
;;
"""

# Each insert takes its chain's advisory lock (held to commit), then reads the chain head
# with a fresh snapshot (a VOLATILE function's statements see what committed before the
# lock was granted), so concurrent inserts into one chain are serialised and each links
# to the last committed row. The row's id is re-drawn when it was drawn before the head's
# (an insert that waited for the lock), so id order is chain order. Only READ COMMITTED
# (every transaction of ours) takes a fresh snapshot per statement; under REPEATABLE READ
# or SERIALIZABLE the head read would be stale and fork the chain: refused.
_TRIGGERS = """
CREATE FUNCTION nexus_job_events_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    head_id bigint;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'job_events is hash-chained: insert under READ COMMITTED';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended(
        'nexus.job_events|' || NEW.job_type || '|' || NEW.job_key::text, 0));
    SELECT id, hash INTO head_id, NEW.prev_hash FROM job_events
    WHERE job_type = NEW.job_type AND job_key = NEW.job_key
    ORDER BY id DESC LIMIT 1;
    IF head_id IS NOT NULL AND NEW.id <= head_id THEN
        NEW.id := nextval(pg_get_serial_sequence('job_events', 'id'));
    END IF;
    NEW.hash := nexus_job_event_hash(NEW);
    RETURN NEW;
END
$$
;;
CREATE TRIGGER job_events_chain BEFORE INSERT ON job_events
    FOR EACH ROW EXECUTE FUNCTION nexus_job_events_chain()
;;

CREATE FUNCTION nexus_operator_actions_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    head_id bigint;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'operator_actions is hash-chained: insert under READ COMMITTED';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('nexus.operator_actions', 0));
    SELECT id, hash INTO head_id, NEW.prev_hash FROM operator_actions
    ORDER BY id DESC LIMIT 1;
    IF head_id IS NOT NULL AND NEW.id <= head_id THEN
        NEW.id := nextval(pg_get_serial_sequence('operator_actions', 'id'));
    END IF;
    NEW.hash := nexus_operator_action_hash(NEW);
    RETURN NEW;
END
$$
;;
CREATE TRIGGER operator_actions_chain BEFORE INSERT ON operator_actions
    FOR EACH ROW EXECUTE FUNCTION nexus_operator_actions_chain()
;;

CREATE FUNCTION nexus_media_file_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO storage_deletions (storage_path) VALUES (OLD.storage_path);
    IF OLD.charged_user_id IS NOT NULL THEN
        UPDATE storage_usage SET bytes = greatest(bytes - OLD.size_bytes, 0),
            updated_at = now()
        WHERE user_id = OLD.charged_user_id;
    END IF;
    RETURN OLD;
END
$$
;;
CREATE TRIGGER media_file_deleted AFTER DELETE ON media_file
    FOR EACH ROW EXECUTE FUNCTION nexus_media_file_deleted()
;;
"""

# Existing rows, chained in the order the triggers would have chained them.
_BACKFILL = """
DO $$
DECLARE
    e job_events;
    a operator_actions;
    prev text;
    last_type text;
    last_key jsonb;
BEGIN
    FOR e IN SELECT * FROM job_events ORDER BY job_type, job_key, id LOOP
        IF last_type IS DISTINCT FROM e.job_type OR last_key IS DISTINCT FROM e.job_key THEN
            prev := NULL;
        END IF;
        e.prev_hash := prev;
        e.hash := nexus_job_event_hash(e);
        UPDATE job_events SET prev_hash = e.prev_hash, hash = e.hash WHERE id = e.id;
        prev := e.hash;
        last_type := e.job_type;
        last_key := e.job_key;
    END LOOP;
    prev := NULL;
    FOR a IN SELECT * FROM operator_actions ORDER BY id LOOP
        a.prev_hash := prev;
        a.hash := nexus_operator_action_hash(a);
        UPDATE operator_actions SET prev_hash = a.prev_hash, hash = a.hash WHERE id = a.id;
        prev := a.hash;
    END LOOP;
END
$$;
"""


def _storage() -> None:
    op.add_column(
        "media_file",
        sa.Column("charged_user_id", postgresql.UUID(as_uuid=True), nullable=True),
    )
    op.create_foreign_key(
        "fk_media_file_charged_user_id_users",
        "media_file",
        "users",
        ["charged_user_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.execute(
        "UPDATE media_file f SET charged_user_id = m.created_by_user_id "
        "FROM media m, media_uploads u WHERE m.id = f.media_id AND u.media_id = f.media_id"
    )
    op.create_table(
        "storage_usage",
        sa.Column("user_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("bytes", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.CheckConstraint("bytes >= 0", name="ck_storage_usage_bytes_non_negative"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_storage_usage_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name="pk_storage_usage"),
    )
    op.execute(
        "INSERT INTO storage_usage (user_id, bytes) SELECT charged_user_id, sum(size_bytes) "
        "FROM media_file WHERE charged_user_id IS NOT NULL GROUP BY charged_user_id"
    )
    op.create_table(
        "storage_deletions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("storage_path", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name="pk_storage_deletions"),
    )
    op.add_column(
        "media_uploads", sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True)
    )
    # Uploads already ingested passed the magic-byte check then (file_sha256 is set with it).
    op.execute(
        "UPDATE media_uploads u SET verified_at = coalesce(u.uploaded_at, now()) FROM media m "
        "WHERE m.id = u.media_id AND m.file_sha256 IS NOT NULL"
    )


def _operator_limits() -> None:
    op.create_table(
        "operator_rate_limit_windows",
        sa.Column("operator_key_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("bucket", sa.String(length=64), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.CheckConstraint("hits >= 0", name="ck_operator_rate_limit_windows_hits_non_negative"),
        sa.ForeignKeyConstraint(
            ["operator_key_id"],
            ["operator_keys.id"],
            name="fk_operator_rate_limit_windows_operator_key_id_operator_keys",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "operator_key_id", "bucket", "window_start", name="pk_operator_rate_limit_windows"
        ),
    )
    op.create_index(
        "ix_operator_rate_limit_windows_window_start",
        "operator_rate_limit_windows",
        ["window_start"],
    )


def _execute_each(script: str) -> None:
    """One statement at a time (asyncpg prepares each): the scripts separate them with a
    line holding only `;;`."""
    for statement in script.split("\n;;\n"):
        if statement.strip():
            op.execute(statement)


def upgrade() -> None:
    _storage()
    _operator_limits()
    for table in ("job_events", "operator_actions"):
        op.add_column(table, sa.Column("prev_hash", sa.String(length=64), nullable=True))
        op.add_column(table, sa.Column("hash", sa.String(length=64), nullable=True))
    op.drop_index("ix_job_events_job_type_job_key", table_name="job_events")
    op.create_index(
        "ix_job_events_job_type_job_key_id", "job_events", ["job_type", "job_key", "id"]
    )
    _execute_each(_HELPERS)
    op.execute(_BACKFILL)
    for table in ("job_events", "operator_actions"):
        op.alter_column(table, "hash", existing_type=sa.String(length=64), nullable=False)
    _execute_each(_TRIGGERS)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS media_file_deleted ON media_file")
    op.execute("DROP TRIGGER IF EXISTS operator_actions_chain ON operator_actions")
    op.execute("DROP TRIGGER IF EXISTS job_events_chain ON job_events")
    for function in (
        "nexus_media_file_deleted()",
        "nexus_operator_actions_chain()",
        "nexus_job_events_chain()",
        "nexus_operator_action_hash(operator_actions)",
        "nexus_job_event_hash(job_events)",
        "nexus_audit_micros(timestamptz)",
        "nexus_audit_field(text)",
    ):
        op.execute(f"DROP FUNCTION IF EXISTS {function}")
    op.drop_index("ix_job_events_job_type_job_key_id", table_name="job_events")
    op.create_index("ix_job_events_job_type_job_key", "job_events", ["job_type", "job_key"])
    for table in ("operator_actions", "job_events"):
        op.drop_column(table, "hash")
        op.drop_column(table, "prev_hash")
    op.drop_index(
        "ix_operator_rate_limit_windows_window_start", table_name="operator_rate_limit_windows"
    )
    op.drop_table("operator_rate_limit_windows")
    op.drop_column("media_uploads", "verified_at")
    op.drop_table("storage_deletions")
    op.drop_table("storage_usage")
    op.drop_constraint("fk_media_file_charged_user_id_users", "media_file", type_="foreignkey")
    op.drop_column("media_file", "charged_user_id")
