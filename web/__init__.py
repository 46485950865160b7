"""The HTTP API: Quart app factory, blueprints, auth, envelopes (see docs/web.md)."""
