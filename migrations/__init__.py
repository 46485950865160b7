"""Alembic migrations (async env). One reversible revision per schema change."""
