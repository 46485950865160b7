"""Idempotency keys and per-user rate limits, shared by every API process via Postgres."""
