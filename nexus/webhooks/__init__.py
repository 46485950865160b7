"""Signed webhooks from the events topic (SPEC §10 "Signed webhooks"; docs/webhooks.md)."""
