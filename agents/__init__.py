"""Faust workers: consume work topics, run leader-only timers, serve monitoring views."""
