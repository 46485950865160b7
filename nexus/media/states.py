"""Media kinds and the user-visible processing state machine (SPEC §8, ARCHITECTURE §4).

`TRANSITIONS` is data the code obeys: every write of `media.processing_status` is a
transition of `MEDIA_STATES` built in `nexus.media.transitions` (refused if not allowed).
"""

from __future__ import annotations

from enum import StrEnum

from nexus.db.transitions import StateTable


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
    # an attempt starts; extracting again: the attempt after one whose lease was rescued
    ProcessingStatus.EXTRACTING: frozenset({ProcessingStatus.PENDING, ProcessingStatus.EXTRACTING}),
    ProcessingStatus.READY_FOR_READING: frozenset({ProcessingStatus.EXTRACTING}),
    ProcessingStatus.EMBEDDING: frozenset({ProcessingStatus.READY_FOR_READING}),
    ProcessingStatus.READY: frozenset({ProcessingStatus.EMBEDDING}),
    ProcessingStatus.FAILED: ACTIVE,
    # retry of a failed media; a failed attempt that will be retried
    ProcessingStatus.PENDING: frozenset({ProcessingStatus.FAILED, ProcessingStatus.EXTRACTING}),
}

MEDIA_STATES: StateTable[ProcessingStatus] = StateTable(
    "media", "processing_status", ("id",), TRANSITIONS
)
