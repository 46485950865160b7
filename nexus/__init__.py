"""Nexus domain and shared infrastructure (no web framework, no Faust, no Kafka client)."""
