"""Message values: JSON documents validated by pydantic. Messages name work; rows decide."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator


def _now() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    """Fields every message carries, so work can be traced from request to worker."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    type: ClassVar[str] = "message"
    # The field whose value is the topic key: one entity's messages stay on one partition.
    key_field: ClassVar[str]

    message_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    request_id: str | None = Field(default=None, max_length=128)
    correlation_id: str | None = Field(default=None, max_length=128)
    sent_at: datetime = Field(default_factory=_now)

    @property
    def key(self) -> str:
        return str(getattr(self, self.key_field))

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    def trace_headers(self) -> dict[str, str]:
        headers = {"message_type": self.type, "message_id": str(self.message_id)}
        if self.request_id:
            headers["request_id"] = self.request_id
        if self.correlation_id:
            headers["correlation_id"] = self.correlation_id
        return headers


class BackfillTuple(Message):
    """A message naming one backfill job: its key columns, keyed by the default library
    (all writes into one default library are serialised)."""

    key_field: ClassVar[str] = "default_library_id"

    default_library_id: uuid.UUID
    source_library_id: uuid.UUID
    user_id: uuid.UUID


class BackfillRequested(BackfillTuple):
    type: ClassVar[str] = "backfill.requested"


class BackfillRequeueRequested(BackfillTuple):
    """Operator message on the requeue topic (any producer may write it)."""

    type: ClassVar[str] = "backfill.requeue"

    requested_by: str = Field(min_length=1, max_length=255)
    reason: str | None = Field(default=None, max_length=1000)


class IngestRequested(Message):
    type: ClassVar[str] = "ingest.requested"
    key_field: ClassVar[str] = "media_id"

    media_id: uuid.UUID
    attempt: int = Field(default=0, ge=0)


class OperationRequested(Message):
    """Names one background operation (`operations` row); the row holds what to do."""

    type: ClassVar[str] = "operation.requested"
    key_field: ClassVar[str] = "operation_id"

    operation_id: uuid.UUID


class DomainEvent(Message):
    """Published on the events topic: `event` names what happened to `entity_id`."""

    type: ClassVar[str] = "domain.event"
    key_field: ClassVar[str] = "entity_id"

    event: str
    entity_id: str
    data: dict[str, Any] = Field(default_factory=dict)


class DeadLetter(BaseModel):
    """What the dead-letter topic carries (SPEC §10): where the message came from, its
    bytes (base64, so any value survives), its headers, and why it could not be processed.

    `id` is the `dead_letters` row that records it (None when that write failed). The
    pre-0014 names are still read: `topic` → `original_topic`, `reason` → `error_message`,
    a text `value` (those letters were all decode failures: `E_MESSAGE_INVALID`); and
    written too (`topic`, `reason`), so older readers of the topic keep working.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    kind: Literal["dead_letter"] = "dead_letter"
    id: int | None = None
    original_topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    value: str  # base64 of the original bytes
    headers: dict[str, str] = Field(default_factory=dict)
    error_code: str
    error_message: str
    worker_id: str | None = None
    at: datetime = Field(default_factory=_now)

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "original_topic" in data:
            return data
        old = dict(data)
        old["original_topic"] = old.pop("topic", None)
        old["error_message"] = old.pop("reason", None) or "unknown (legacy letter)"
        old.setdefault("error_code", "E_MESSAGE_INVALID")
        value = old.get("value")
        if isinstance(value, str):
            value = value.encode()
        if isinstance(value, bytes | bytearray):
            old["value"] = base64.b64encode(value).decode()
        return old

    @classmethod
    def of(cls, raw: bytes, **fields: Any) -> DeadLetter:
        """A letter for the original bytes `raw`."""
        return cls(value=base64.b64encode(raw).decode(), **fields)

    def raw_value(self) -> bytes:
        return base64.b64decode(self.value, validate=True)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def topic(self) -> str:
        """Pre-0014 name of `original_topic`."""
        return self.original_topic

    @computed_field  # type: ignore[prop-decorator]
    @property
    def reason(self) -> str:
        """Pre-0014 name of `error_message`."""
        return self.error_message
