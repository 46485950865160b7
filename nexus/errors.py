"""Domain errors: one root, one registry of codes, a small kind for routing.

Every failure the system names has a stable code (`E_...`) registered in `CODES` with its
`ErrorKind`. The domain raises `NexusError` (or a subclass) with a registered code and
never speaks HTTP: the web layer maps code → status (`web/statuses.py`) and renders the
one envelope; the agents map a job failure to retry / fail / dead-letter. Job work raises
`TransientError` (worth retrying) or `TerminalError` (no retry can fix it); both are
`NexusError`s with registered codes, so the codes stored on media and jobs are the same
vocabulary as the ones answered over HTTP.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar


class ErrorKind(StrEnum):
    INVALID = "invalid"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    LIMITED = "limited"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


_K = ErrorKind

# Every code of SPEC §2 (answered over HTTP, stored on media/jobs, or both) and its kind.
CODES: dict[str, ErrorKind] = {
    # request and input
    "E_INVALID_REQUEST": _K.INVALID,
    "E_NAME_INVALID": _K.INVALID,
    "E_INVALID_CURSOR": _K.INVALID,
    "E_INVALID_URL": _K.INVALID,
    "E_INVALID_CONTENT_TYPE": _K.INVALID,
    "E_INVALID_FILE_TYPE": _K.INVALID,
    "E_SEARCH_QUERY_INVALID": _K.INVALID,
    "E_FILE_TOO_LARGE": _K.INVALID,
    "E_PAYLOAD_TOO_LARGE": _K.INVALID,
    "E_STORAGE_MISSING": _K.INVALID,
    "E_METHOD_NOT_ALLOWED": _K.INVALID,
    # identity and access
    "E_UNAUTHENTICATED": _K.UNAUTHENTICATED,
    "E_INTERNAL_ONLY": _K.FORBIDDEN,
    "E_FORBIDDEN": _K.FORBIDDEN,
    "E_DEFAULT_LIBRARY_FORBIDDEN": _K.FORBIDDEN,
    "E_LAST_ADMIN_FORBIDDEN": _K.FORBIDDEN,
    "E_OWNER_REQUIRED": _K.FORBIDDEN,
    "E_OWNER_EXIT_FORBIDDEN": _K.FORBIDDEN,
    "E_SSRF_BLOCKED": _K.FORBIDDEN,
    # missing (or masked)
    "E_NOT_FOUND": _K.NOT_FOUND,
    "E_LIBRARY_NOT_FOUND": _K.NOT_FOUND,
    "E_MEDIA_NOT_FOUND": _K.NOT_FOUND,
    "E_USER_NOT_FOUND": _K.NOT_FOUND,
    "E_INVITE_NOT_FOUND": _K.NOT_FOUND,
    # state conflicts
    "E_INVITE_ALREADY_EXISTS": _K.CONFLICT,
    "E_INVITE_MEMBER_EXISTS": _K.CONFLICT,
    "E_INVITE_NOT_PENDING": _K.CONFLICT,
    "E_OWNERSHIP_TRANSFER_INVALID": _K.CONFLICT,
    "E_MEDIA_NOT_RETRYABLE": _K.CONFLICT,
    "E_JOB_NOT_CANCELLABLE": _K.CONFLICT,
    "E_IDEMPOTENCY_KEY_REUSED": _K.CONFLICT,
    "E_QUOTA_EXCEEDED": _K.CONFLICT,
    # limits
    "E_RATE_LIMITED": _K.LIMITED,
    "E_TOO_MANY_STREAMS": _K.LIMITED,
    # dependencies and bugs
    "E_AUTH_UNAVAILABLE": _K.UNAVAILABLE,
    "E_DEPENDENCY_UNAVAILABLE": _K.UNAVAILABLE,
    "E_STORAGE_ERROR": _K.INTERNAL,
    "E_INTERNAL": _K.INTERNAL,
    # stored on media and jobs by the workers
    "E_FETCH_FAILED": _K.UNAVAILABLE,
    "E_FETCH_TIMEOUT": _K.UNAVAILABLE,
    "E_FETCH_TOO_LARGE": _K.INVALID,
    "E_UNSUPPORTED_CONTENT": _K.INVALID,
    "E_EXTRACTION_FAILED": _K.INVALID,
    "E_EXTRACTION_EMPTY": _K.INVALID,
    "E_PDF_ENCRYPTED": _K.INVALID,
    "E_SANITIZATION_FAILED": _K.INTERNAL,
    "E_BACKFILL_TUPLE_INVALID": _K.INVALID,
    "E_LEASE_EXPIRED": _K.UNAVAILABLE,
    "E_CANCELLED": _K.CONFLICT,
}

# Codes that may be recorded on media rows and jobs (SPEC §2, "Codes stored on media or
# jobs"); E_INVALID_URL too: a media whose URL cannot be fetched fails with it.
STORED_CODES: frozenset[str] = frozenset(
    {
        "E_FETCH_FAILED",
        "E_FETCH_TIMEOUT",
        "E_FETCH_TOO_LARGE",
        "E_SSRF_BLOCKED",
        "E_UNSUPPORTED_CONTENT",
        "E_EXTRACTION_FAILED",
        "E_EXTRACTION_EMPTY",
        "E_PDF_ENCRYPTED",
        "E_SANITIZATION_FAILED",
        "E_STORAGE_MISSING",
        "E_INVALID_FILE_TYPE",
        "E_INVALID_URL",
        "E_BACKFILL_TUPLE_INVALID",
        "E_LEASE_EXPIRED",
        "E_CANCELLED",
        "E_INTERNAL",
    }
)


def kind_of(code: str) -> ErrorKind:
    """The kind of a registered code; an unknown code is a bug, so it is INTERNAL."""
    return CODES.get(code, ErrorKind.INTERNAL)


class NexusError(Exception):
    """A failure with a registered code. `message` is safe to show to clients.

    `retry_after` (seconds) tells the caller when trying again may succeed (rate limits,
    transient database conflicts); the web layer turns it into `Retry-After`.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        details: Any = None,
        retry_after: int | None = None,
    ) -> None:
        if code not in CODES:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.retry_after = retry_after

    @property
    def kind(self) -> ErrorKind:
        return CODES[self.code]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class InvalidRequest(NexusError):
    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__("E_INVALID_REQUEST", message, details=details)


class NotFound(NexusError):
    def __init__(self, message: str = "not found", *, code: str = "E_NOT_FOUND") -> None:
        super().__init__(code, message)


class Forbidden(NexusError):
    def __init__(self, message: str = "forbidden", *, code: str = "E_FORBIDDEN") -> None:
        super().__init__(code, message)


class Conflict(NexusError):
    pass


class Unauthenticated(NexusError):
    def __init__(self, message: str = "authentication required") -> None:
        super().__init__("E_UNAUTHENTICATED", message)


class DependencyUnavailable(NexusError):
    def __init__(
        self, message: str = "a dependency is unavailable", *, retry_after: int | None = None
    ) -> None:
        super().__init__("E_DEPENDENCY_UNAVAILABLE", message, retry_after=retry_after)


class JobFailure(NexusError):
    """A failure of job work; `terminal` says whether a retry could fix it."""

    terminal: ClassVar[bool]

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)


class TransientError(JobFailure):
    """Worth retrying (network, timeouts, database hiccups)."""

    terminal = False


class TerminalError(JobFailure):
    """No retry can fix it (404, unsupported content, encrypted PDF, invalid tuple)."""

    terminal = True
