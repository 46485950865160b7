"""Generic job machinery shared by every job type (written once, used by all)."""
