"""Database access: engine and sessions, declarative base, transactions, error translation."""
