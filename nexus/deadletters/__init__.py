"""Dead letters: messages the agents could not process, kept for operators (SPEC §10)."""
