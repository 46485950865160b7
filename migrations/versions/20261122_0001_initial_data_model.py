"""initial data model

Revision ID: 0001
Revises:
Create Date: 2026-11-22 02:15:45.350635+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('job_events',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('job_type', sa.String(length=32), nullable=False),
    sa.Column('job_key', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('from_status', sa.String(length=16), nullable=True),
    sa.Column('to_status', sa.String(length=16), nullable=False),
    sa.Column('attempt', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('actor', sa.String(length=255), nullable=False),
    sa.Column('error_code', sa.String(length=64), nullable=True),
    sa.Column('error_message', sa.String(length=1000), nullable=True),
    sa.Column('request_id', sa.String(length=128), nullable=True),
    sa.Column('correlation_id', sa.String(length=128), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_events'))
    )
    op.create_index('ix_job_events_at', 'job_events', ['at'], unique=False)
    op.create_index('ix_job_events_job_type_job_key', 'job_events', ['job_type', 'job_key'], unique=False)
    op.create_table('operator_keys',
    sa.Column('id', sa.UUID(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('key_hash', sa.String(length=128), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('disabled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("role IN ('viewer', 'operator', 'admin')", name=op.f('ck_operator_keys_role')),
    sa.CheckConstraint('char_length(name) BETWEEN 1 AND 100', name=op.f('ck_operator_keys_name_length')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_operator_keys'))
    )
    op.create_index('uix_operator_keys_key_hash', 'operator_keys', ['key_hash'], unique=True)
    op.create_index('uix_operator_keys_name', 'operator_keys', ['name'], unique=True)
    op.create_table('outbox',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('topic', sa.String(length=255), nullable=False),
    sa.Column('key', sa.Text(), nullable=True),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('headers', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('publish_attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('last_error', sa.String(length=1000), nullable=True),
    sa.CheckConstraint('publish_attempts >= 0', name=op.f('ck_outbox_publish_attempts_non_negative')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox'))
    )
    op.create_index('ix_outbox_key', 'outbox', ['key'], unique=False)
    op.create_index('ix_outbox_unpublished', 'outbox', ['id'], unique=False, postgresql_where=sa.text('published_at IS NULL'))
    op.create_table('users',
    sa.Column('id', sa.UUID(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users'))
    )
    op.create_table('idempotency_keys',
    sa.Column('user_id', sa.UUID(), nullable=False),
    sa.Column('route', sa.String(length=255), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=False),
    sa.Column('response', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('char_length(key) BETWEEN 1 AND 255', name=op.f('ck_idempotency_keys_key_length')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_idempotency_keys_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'route', 'key', name=op.f('pk_idempotency_keys'))
    )
    op.create_index('ix_idempotency_keys_created_at', 'idempotency_keys', ['created_at'], unique=False)
    op.create_table('libraries',
    sa.Column('id', sa.UUID(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('owner_user_id', sa.UUID(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('is_default', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('char_length(name) BETWEEN 1 AND 100', name=op.f('ck_libraries_name_length')),
    sa.ForeignKeyConstraint(['owner_user_id'], ['users.id'], name=op.f('fk_libraries_owner_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_libraries'))
    )
    op.create_index('ix_libraries_owner_user_id', 'libraries', ['owner_user_id'], unique=False)
    op.create_index('uix_libraries_one_default_per_user', 'libraries', ['owner_user_id'], unique=True, postgresql_where=sa.text('is_default'))
    op.create_table('media',
    sa.Column('id', sa.UUID(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('title', sa.Text(), nullable=True),
    sa.Column('canonical_source_url', sa.String(length=2048), nullable=True),
    sa.Column('processing_status', sa.Enum('pending', 'extracting', 'ready_for_reading', 'embedding', 'ready', 'failed', name='processing_status'), server_default=sa.text("'pending'"), nullable=False),
    sa.Column('failure_stage', sa.Enum('upload', 'extract', 'transcribe', 'embed', 'other', name='failure_stage'), nullable=True),
    sa.Column('last_error_code', sa.String(length=64), nullable=True),
    sa.Column('last_error_message', sa.String(length=1000), nullable=True),
    sa.Column('processing_attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('processing_started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('processing_completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('failed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('requested_url', sa.String(length=2048), nullable=True),
    sa.Column('canonical_url', sa.String(length=2048), nullable=True),
    sa.Column('file_sha256', sa.String(length=64), nullable=True),
    sa.Column('external_playback_url', sa.String(length=2048), nullable=True),
    sa.Column('provider', sa.String(length=64), nullable=True),
    sa.Column('provider_id', sa.String(length=255), nullable=True),
    sa.Column('created_by_user_id', sa.UUID(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("kind IN ('web_article', 'epub', 'pdf', 'video', 'podcast_episode')", name=op.f('ck_media_kind')),
    sa.CheckConstraint('processing_attempts >= 0', name=op.f('ck_media_processing_attempts_non_negative')),
    sa.ForeignKeyConstraint(['created_by_user_id'], ['users.id'], name=op.f('fk_media_created_by_user_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_media'))
    )
    op.create_index('ix_media_created_by_user_id', 'media', ['created_by_user_id'], unique=False)
    op.create_index('uix_media_canonical_url', 'media', ['kind', 'canonical_url'], unique=True, postgresql_where=sa.text('canonical_url IS NOT NULL'))
    op.create_index('uix_media_file_sha256', 'media', ['created_by_user_id', 'kind', 'file_sha256'], unique=True, postgresql_where=sa.text("file_sha256 IS NOT NULL AND kind IN ('pdf', 'epub')"))
    op.create_table('operator_actions',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('operator_key_id', sa.UUID(), nullable=True),
    sa.Column('actor', sa.String(length=255), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('target', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('outcome', sa.String(length=64), nullable=False),
    sa.Column('details', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('request_id', sa.String(length=128), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['operator_key_id'], ['operator_keys.id'], name=op.f('fk_operator_actions_operator_key_id_operator_keys'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_operator_actions'))
    )
    op.create_index('ix_operator_actions_at', 'operator_actions', ['at'], unique=False)
    op.create_index('ix_operator_actions_target', 'operator_actions', ['target'], unique=False, postgresql_using='gin')
    op.create_table('rate_limit_windows',
    sa.Column('user_id', sa.UUID(), nullable=False),
    sa.Column('bucket', sa.String(length=64), nullable=False),
    sa.Column('window_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('hits', sa.Integer(), nullable=False),
    sa.CheckConstraint('hits >= 0', name=op.f('ck_rate_limit_windows_hits_non_negative')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_rate_limit_windows_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'bucket', 'window_start', name=op.f('pk_rate_limit_windows'))
    )
    op.create_index('ix_rate_limit_windows_window_start', 'rate_limit_windows', ['window_start'], unique=False)
    op.create_table('default_library_backfill_jobs',
    sa.Column('default_library_id', sa.UUID(), nullable=False),
    sa.Column('source_library_id', sa.UUID(), nullable=False),
    sa.Column('user_id', sa.UUID(), nullable=False),
    sa.Column('status', sa.String(length=16), server_default=sa.text("'pending'"), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('lease_token', sa.UUID(), nullable=True),
    sa.Column('lease_owner', sa.String(length=255), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error_code', sa.String(length=64), nullable=True),
    sa.Column('last_error_message', sa.String(length=1000), nullable=True),
    sa.Column('request_id', sa.String(length=128), nullable=True),
    sa.Column('correlation_id', sa.String(length=128), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("(finished_at IS NOT NULL) = (status IN ('completed', 'failed'))", name=op.f('ck_default_library_backfill_jobs_finished_iff_terminal')),
    sa.CheckConstraint("(status = 'running') = (lease_token IS NOT NULL AND lease_expires_at IS NOT NULL)", name=op.f('ck_default_library_backfill_jobs_lease_iff_running')),
    sa.CheckConstraint("status IN ('pending', 'running', 'completed', 'failed')", name=op.f('ck_default_library_backfill_jobs_status')),
    sa.CheckConstraint('attempts >= 0', name=op.f('ck_default_library_backfill_jobs_attempts_non_negative')),
    sa.ForeignKeyConstraint(['default_library_id'], ['libraries.id'], name=op.f('fk_default_library_backfill_jobs_default_library_id_libraries'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['source_library_id'], ['libraries.id'], name=op.f('fk_default_library_backfill_jobs_source_library_id_libraries'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_default_library_backfill_jobs_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('default_library_id', 'source_library_id', 'user_id', name=op.f('pk_default_library_backfill_jobs'))
    )
    op.create_index('ix_default_library_backfill_jobs_status_next_attempt_at', 'default_library_backfill_jobs', ['status', 'next_attempt_at'], unique=False)
    op.create_index('ix_default_library_backfill_jobs_updated_at', 'default_library_backfill_jobs', ['updated_at'], unique=False)
    op.create_table('default_library_closure_edges',
    sa.Column('default_library_id', sa.UUID(), nullable=False),
    sa.Column('media_id', sa.UUID(), nullable=False),
    sa.Column('source_library_id', sa.UUID(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['default_library_id'], ['libraries.id'], name=op.f('fk_default_library_closure_edges_default_library_id_libraries'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['media_id'], ['media.id'], name=op.f('fk_default_library_closure_edges_media_id_media'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['source_library_id'], ['libraries.id'], name=op.f('fk_default_library_closure_edges_source_library_id_libraries'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('default_library_id', 'media_id', 'source_library_id', name=op.f('pk_default_library_closure_edges'))
    )
    op.create_index('ix_default_library_closure_edges_default_media', 'default_library_closure_edges', ['default_library_id', 'media_id'], unique=False)
    op.create_index('ix_default_library_closure_edges_source_default_media', 'default_library_closure_edges', ['source_library_id', 'default_library_id', 'media_id'], unique=False)
    op.create_table('default_library_intrinsics',
    sa.Column('default_library_id', sa.UUID(), nullable=False),
    sa.Column('media_id', sa.UUID(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['default_library_id'], ['libraries.id'], name=op.f('fk_default_library_intrinsics_default_library_id_libraries'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['media_id'], ['media.id'], name=op.f('fk_default_library_intrinsics_media_id_media'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('default_library_id', 'media_id', name=op.f('pk_default_library_intrinsics'))
    )
    op.create_table('fragments',
    sa.Column('id', sa.UUID(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('media_id', sa.UUID(), nullable=False),
    sa.Column('idx', sa.Integer(), nullable=False),
    sa.Column('canonical_text', sa.Text(), nullable=False),
    sa.Column('html_sanitized', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('idx >= 0', name=op.f('ck_fragments_idx_non_negative')),
    sa.ForeignKeyConstraint(['media_id'], ['media.id'], name=op.f('fk_fragments_media_id_media'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fragments')),
    sa.UniqueConstraint('media_id', 'idx', name=op.f('uq_fragments_media_id_idx'))
    )
    op.create_table('ingest_jobs',
    sa.Column('media_id', sa.UUID(), nullable=False),
    sa.Column('status', sa.String(length=16), server_default=sa.text("'pending'"), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('lease_token', sa.UUID(), nullable=True),
    sa.Column('lease_owner', sa.String(length=255), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error_code', sa.String(length=64), nullable=True),
    sa.Column('last_error_message', sa.String(length=1000), nullable=True),
    sa.Column('request_id', sa.String(length=128), nullable=True),
    sa.Column('correlation_id', sa.String(length=128), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("(finished_at IS NOT NULL) = (status IN ('completed', 'failed'))", name=op.f('ck_ingest_jobs_finished_iff_terminal')),
    sa.CheckConstraint("(status = 'running') = (lease_token IS NOT NULL AND lease_expires_at IS NOT NULL)", name=op.f('ck_ingest_jobs_lease_iff_running')),
    sa.CheckConstraint("status IN ('pending', 'running', 'completed', 'failed')", name=op.f('ck_ingest_jobs_status')),
    sa.CheckConstraint('attempts >= 0', name=op.f('ck_ingest_jobs_attempts_non_negative')),
    sa.ForeignKeyConstraint(['media_id'], ['media.id'], name=op.f('fk_ingest_jobs_media_id_media'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('media_id', name=op.f('pk_ingest_jobs'))
    )
    op.create_index('ix_ingest_jobs_status_next_attempt_at', 'ingest_jobs', ['status', 'next_attempt_at'], unique=False)
    op.create_index('ix_ingest_jobs_updated_at', 'ingest_jobs', ['updated_at'], unique=False)
    op.create_table('library_invitations',
    sa.Column('id', sa.UUID(), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('library_id', sa.UUID(), nullable=False),
    sa.Column('inviter_user_id', sa.UUID(), nullable=False),
    sa.Column('invitee_user_id', sa.UUID(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), server_default=sa.text("'pending'"), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('responded_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("(status = 'pending') = (responded_at IS NULL)", name=op.f('ck_library_invitations_responded_iff_not_pending')),
    sa.CheckConstraint("role IN ('admin', 'member')", name=op.f('ck_library_invitations_role')),
    sa.CheckConstraint("status IN ('pending', 'accepted', 'declined', 'revoked')", name=op.f('ck_library_invitations_status')),
    sa.CheckConstraint('inviter_user_id <> invitee_user_id', name=op.f('ck_library_invitations_not_self')),
    sa.ForeignKeyConstraint(['invitee_user_id'], ['users.id'], name=op.f('fk_library_invitations_invitee_user_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['inviter_user_id'], ['users.id'], name=op.f('fk_library_invitations_inviter_user_id_users'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['library_id'], ['libraries.id'], name=op.f('fk_library_invitations_library_id_libraries'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_library_invitations'))
    )
    op.create_index('ix_library_invitations_invitee_user_id_status', 'library_invitations', ['invitee_user_id', 'status'], unique=False)
    op.create_index('ix_library_invitations_library_id_status', 'library_invitations', ['library_id', 'status'], unique=False)
    op.create_index('uix_library_invitations_one_pending', 'library_invitations', ['library_id', 'invitee_user_id'], unique=True, postgresql_where=sa.text("status = 'pending'"))
    op.create_table('library_media',
    sa.Column('library_id', sa.UUID(), nullable=False),
    sa.Column('media_id', sa.UUID(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['library_id'], ['libraries.id'], name=op.f('fk_library_media_library_id_libraries'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['media_id'], ['media.id'], name=op.f('fk_library_media_media_id_media'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('library_id', 'media_id', name=op.f('pk_library_media'))
    )
    op.create_index('ix_library_media_media_id_library_id', 'library_media', ['media_id', 'library_id'], unique=False)
    op.create_table('media_file',
    sa.Column('media_id', sa.UUID(), nullable=False),
    sa.Column('storage_path', sa.Text(), nullable=False),
    sa.Column('content_type', sa.String(length=255), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('size_bytes >= 0', name=op.f('ck_media_file_size_non_negative')),
    sa.ForeignKeyConstraint(['media_id'], ['media.id'], name=op.f('fk_media_file_media_id_media'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('media_id', name=op.f('pk_media_file'))
    )
    op.create_table('media_merges',
    sa.Column('from_media_id', sa.UUID(), nullable=False),
    sa.Column('into_media_id', sa.UUID(), nullable=False),
    sa.Column('merged_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('from_media_id <> into_media_id', name=op.f('ck_media_merges_not_self')),
    sa.ForeignKeyConstraint(['into_media_id'], ['media.id'], name=op.f('fk_media_merges_into_media_id_media'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('from_media_id', name=op.f('pk_media_merges'))
    )
    op.create_index('ix_media_merges_into_media_id', 'media_merges', ['into_media_id'], unique=False)
    op.create_table('memberships',
    sa.Column('library_id', sa.UUID(), nullable=False),
    sa.Column('user_id', sa.UUID(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("role IN ('admin', 'member')", name=op.f('ck_memberships_role')),
    sa.ForeignKeyConstraint(['library_id'], ['libraries.id'], name=op.f('fk_memberships_library_id_libraries'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_memberships_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('library_id', 'user_id', name=op.f('pk_memberships'))
    )
    op.create_index('ix_memberships_user_id_library_id_role', 'memberships', ['user_id', 'library_id', 'role'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_memberships_user_id_library_id_role', table_name='memberships')
    op.drop_table('memberships')
    op.drop_index('ix_media_merges_into_media_id', table_name='media_merges')
    op.drop_table('media_merges')
    op.drop_table('media_file')
    op.drop_index('ix_library_media_media_id_library_id', table_name='library_media')
    op.drop_table('library_media')
    op.drop_index('uix_library_invitations_one_pending', table_name='library_invitations', postgresql_where=sa.text("status = 'pending'"))
    op.drop_index('ix_library_invitations_library_id_status', table_name='library_invitations')
    op.drop_index('ix_library_invitations_invitee_user_id_status', table_name='library_invitations')
    op.drop_table('library_invitations')
    op.drop_index('ix_ingest_jobs_updated_at', table_name='ingest_jobs')
    op.drop_index('ix_ingest_jobs_status_next_attempt_at', table_name='ingest_jobs')
    op.drop_table('ingest_jobs')
    op.drop_table('fragments')
    op.drop_table('default_library_intrinsics')
    op.drop_index('ix_default_library_closure_edges_source_default_media', table_name='default_library_closure_edges')
    op.drop_index('ix_default_library_closure_edges_default_media', table_name='default_library_closure_edges')
    op.drop_table('default_library_closure_edges')
    op.drop_index('ix_default_library_backfill_jobs_updated_at', table_name='default_library_backfill_jobs')
    op.drop_index('ix_default_library_backfill_jobs_status_next_attempt_at', table_name='default_library_backfill_jobs')
    op.drop_table('default_library_backfill_jobs')
    op.drop_index('ix_rate_limit_windows_window_start', table_name='rate_limit_windows')
    op.drop_table('rate_limit_windows')
    op.drop_index('ix_operator_actions_target', table_name='operator_actions', postgresql_using='gin')
    op.drop_index('ix_operator_actions_at', table_name='operator_actions')
    op.drop_table('operator_actions')
    op.drop_index('uix_media_file_sha256', table_name='media', postgresql_where=sa.text("file_sha256 IS NOT NULL AND kind IN ('pdf', 'epub')"))
    op.drop_index('uix_media_canonical_url', table_name='media', postgresql_where=sa.text('canonical_url IS NOT NULL'))
    op.drop_index('ix_media_created_by_user_id', table_name='media')
    op.drop_table('media')
    op.drop_index('uix_libraries_one_default_per_user', table_name='libraries', postgresql_where=sa.text('is_default'))
    op.drop_index('ix_libraries_owner_user_id', table_name='libraries')
    op.drop_table('libraries')
    op.drop_index('ix_idempotency_keys_created_at', table_name='idempotency_keys')
    op.drop_table('idempotency_keys')
    op.drop_table('users')
    op.drop_index('ix_outbox_unpublished', table_name='outbox', postgresql_where=sa.text('published_at IS NULL'))
    op.drop_index('ix_outbox_key', table_name='outbox')
    op.drop_table('outbox')
    op.drop_index('uix_operator_keys_name', table_name='operator_keys')
    op.drop_index('uix_operator_keys_key_hash', table_name='operator_keys')
    op.drop_table('operator_keys')
    op.drop_index('ix_job_events_job_type_job_key', table_name='job_events')
    op.drop_index('ix_job_events_at', table_name='job_events')
    op.drop_table('job_events')
    sa.Enum(name='failure_stage').drop(op.get_bind(), checkfirst=False)
    sa.Enum(name='processing_status').drop(op.get_bind(), checkfirst=False)
