"""Request and correlation ids (SPEC §1): accepted from headers when well-formed, else new.

The ids live in context variables (and structlog's contextvars), so services, log lines and
outbox messages written during a request can pick them up without threading them through
every call.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

import structlog

REQUEST_ID_HEADER = "X-Request-ID"
CORRELATION_ID_HEADER = "X-Correlation-ID"

_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")

_request_id: ContextVar[str | None] = ContextVar("nexus_request_id", default=None)
_correlation_id: ContextVar[str | None] = ContextVar("nexus_correlation_id", default=None)


def normalise(raw: str | None) -> str | None:
    """The accepted form of a client-supplied id, or None when it must be replaced."""
    if raw is None or _ID_RE.fullmatch(raw) is None:
        return None
    try:
        parsed = uuid.UUID(raw)
    except ValueError:
        return raw
    # A UUID (hyphenated or not) is lower-cased in the form it was sent.
    del parsed
    return raw.lower()


def resolve(request_header: str | None, correlation_header: str | None) -> tuple[str, str]:
    """(request_id, correlation_id) for a request with these header values."""
    request_id = normalise(request_header) or str(uuid.uuid4())
    correlation_id = normalise(correlation_header) or request_id
    return request_id, correlation_id


def bind(request_id: str, correlation_id: str) -> None:
    """Make the ids current for this task (services, logs)."""
    _request_id.set(request_id)
    _correlation_id.set(correlation_id)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id, correlation_id=correlation_id)


def current_request_id() -> str | None:
    return _request_id.get()


def current_correlation_id() -> str | None:
    return _correlation_id.get()
