"""Response shapes of the media read routes (SPEC §4, §8)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from nexus.media.states import FailureStage, MediaKind, ProcessingStatus


class Capabilities(BaseModel):
    can_read: bool
    can_highlight: bool
    can_quote: bool
    can_search: bool
    can_play: bool
    can_download_file: bool


class MediaOut(BaseModel):
    id: uuid.UUID
    kind: MediaKind
    title: str | None
    canonical_source_url: str | None
    processing_status: ProcessingStatus
    failure_stage: FailureStage | None
    last_error_code: str | None
    capabilities: Capabilities
    created_at: datetime
    updated_at: datetime


class FragmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    idx: int
    canonical_text: str
    html_sanitized: str
    created_at: datetime
