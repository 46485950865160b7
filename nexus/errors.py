"""Domain errors: one root, a stable code per failure, a small kind for routing.

The web layer turns `code` into an HTTP status (`HTTP_STATUS`) and renders the single
envelope; the agents turn `kind` into retry / fail / dead-letter.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorKind(StrEnum):
    INVALID = "invalid"
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"
    CONFLICT = "conflict"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


# Every HTTP-facing code of SPEC §2 with its status; the table is the contract.
HTTP_STATUS: dict[str, int] = {
    "E_INVALID_REQUEST": 400,
    "E_NAME_INVALID": 400,
    "E_INVALID_CURSOR": 400,
    "E_INVALID_URL": 400,
    "E_INVALID_CONTENT_TYPE": 400,
    "E_INVALID_FILE_TYPE": 400,
    "E_STORAGE_MISSING": 400,
    "E_FILE_TOO_LARGE": 413,
    "E_UNAUTHENTICATED": 401,
    "E_INTERNAL_ONLY": 403,
    "E_FORBIDDEN": 403,
    "E_DEFAULT_LIBRARY_FORBIDDEN": 403,
    "E_LAST_ADMIN_FORBIDDEN": 403,
    "E_OWNER_REQUIRED": 403,
    "E_OWNER_EXIT_FORBIDDEN": 403,
    "E_SSRF_BLOCKED": 403,
    "E_NOT_FOUND": 404,
    "E_LIBRARY_NOT_FOUND": 404,
    "E_MEDIA_NOT_FOUND": 404,
    "E_USER_NOT_FOUND": 404,
    "E_INVITE_NOT_FOUND": 404,
    "E_METHOD_NOT_ALLOWED": 405,
    "E_INVITE_ALREADY_EXISTS": 409,
    "E_INVITE_MEMBER_EXISTS": 409,
    "E_INVITE_NOT_PENDING": 409,
    "E_OWNERSHIP_TRANSFER_INVALID": 409,
    "E_MEDIA_NOT_RETRYABLE": 409,
    "E_IDEMPOTENCY_KEY_REUSED": 409,
    "E_RATE_LIMITED": 429,
    "E_INTERNAL": 500,
    "E_STORAGE_ERROR": 500,
    "E_AUTH_UNAVAILABLE": 503,
    "E_DEPENDENCY_UNAVAILABLE": 503,
}

# Codes recorded on media rows and jobs (never an HTTP response by themselves).
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
        "E_BACKFILL_TUPLE_INVALID",
        "E_LEASE_EXPIRED",
        "E_INTERNAL",
    }
)

_KIND_BY_STATUS: dict[int, ErrorKind] = {
    400: ErrorKind.INVALID,
    401: ErrorKind.FORBIDDEN,
    403: ErrorKind.FORBIDDEN,
    404: ErrorKind.NOT_FOUND,
    405: ErrorKind.INVALID,
    409: ErrorKind.CONFLICT,
    413: ErrorKind.INVALID,
    429: ErrorKind.UNAVAILABLE,
    500: ErrorKind.INTERNAL,
    503: ErrorKind.UNAVAILABLE,
}


def status_for(code: str) -> int:
    return HTTP_STATUS.get(code, 500)


class NexusError(Exception):
    """A failure with a stable code. `message` is safe to show to clients."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if code not in HTTP_STATUS and code not in STORED_CODES:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}

    @property
    def status(self) -> int:
        return status_for(self.code)

    @property
    def kind(self) -> ErrorKind:
        return _KIND_BY_STATUS.get(self.status, ErrorKind.INTERNAL)

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
    def __init__(self, message: str = "a dependency is unavailable") -> None:
        super().__init__("E_DEPENDENCY_UNAVAILABLE", message)


class TransientError(Exception):
    """Raised by job handlers for failures worth retrying (network, timeouts, DB hiccups)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TerminalError(Exception):
    """Raised by job handlers for failures that no retry can fix."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
