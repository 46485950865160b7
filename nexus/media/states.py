"""Media kinds and the user-visible processing state machine (SPEC §8, ARCHITECTURE §4)."""

from __future__ import annotations

from enum import StrEnum


class MediaKind(StrEnum):
    WEB_ARTICLE = "web_article"
    EPUB = "epub"
    PDF = "pdf"
    VIDEO = "video"
    PODCAST_EPISODE = "podcast_episode"


class ProcessingStatus(StrEnum):
    PENDING = "pending"
    EXTRACTING = "extracting"
    READY_FOR_READING = "ready_for_reading"
    EMBEDDING = "embedding"
    READY = "ready"
    FAILED = "failed"


class FailureStage(StrEnum):
    UPLOAD = "upload"
    EXTRACT = "extract"
    TRANSCRIBE = "transcribe"
    EMBED = "embed"
    OTHER = "other"


ACTIVE = frozenset(
    {ProcessingStatus.PENDING, ProcessingStatus.EXTRACTING, ProcessingStatus.EMBEDDING}
)
READABLE = frozenset(
    {ProcessingStatus.READY_FOR_READING, ProcessingStatus.EMBEDDING, ProcessingStatus.READY}
)

# to-state -> states it may be entered from
TRANSITIONS: dict[ProcessingStatus, frozenset[ProcessingStatus]] = {
    ProcessingStatus.EXTRACTING: frozenset({ProcessingStatus.PENDING}),
    ProcessingStatus.READY_FOR_READING: frozenset({ProcessingStatus.EXTRACTING}),
    ProcessingStatus.EMBEDDING: frozenset({ProcessingStatus.READY_FOR_READING}),
    ProcessingStatus.READY: frozenset({ProcessingStatus.EMBEDDING}),
    ProcessingStatus.FAILED: ACTIVE,
    ProcessingStatus.PENDING: frozenset({ProcessingStatus.FAILED, ProcessingStatus.EXTRACTING}),
}
