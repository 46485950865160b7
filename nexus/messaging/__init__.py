"""Topic names, message models and the Publisher protocol (no Kafka client here)."""
