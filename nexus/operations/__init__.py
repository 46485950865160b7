"""Operations: long operator actions run in the background as jobs (docs/architecture-notes.md)."""
