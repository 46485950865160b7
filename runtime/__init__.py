"""Process-level adapters shared by web, agents and the CLI (aiokafka, logging)."""
