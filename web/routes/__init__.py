"""Blueprints: `ops` (health, readiness, metrics), `me`, `internal` (operators)."""
