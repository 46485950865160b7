"""Blueprints grouped by resource. Public (BFF): `me`, `libraries`, `invites`, `media`
(save by URL, read, retry), `media_events` (SSE), `uploads`. Operators (`/internal`):
`stats`, `backfill_jobs`, `ingest_jobs`, `outbox`, `operations`,
`dead_letters`, `workers`. Ops: `ops` (health, readiness, metrics)."""
