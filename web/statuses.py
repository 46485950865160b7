"""HTTP statuses of the domain's error codes (SPEC §2): the table is the contract.

The domain names failures by code only (`nexus.errors.CODES`); this is the one place a code
becomes a status. Codes that are only ever stored on media and jobs have no entry and would
answer 500 if one ever reached a response.
"""

from __future__ import annotations

from types import MappingProxyType

HTTP_STATUS = MappingProxyType(
    {
        "E_INVALID_REQUEST": 400,
        "E_NAME_INVALID": 400,
        "E_INVALID_CURSOR": 400,
        "E_INVALID_URL": 400,
        "E_INVALID_CONTENT_TYPE": 400,
        "E_INVALID_FILE_TYPE": 400,
        "E_STORAGE_MISSING": 400,
        "E_SEARCH_QUERY_INVALID": 400,
        "E_FILE_TOO_LARGE": 413,
        "E_PAYLOAD_TOO_LARGE": 413,
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
        "E_JOB_NOT_CANCELLABLE": 409,
        "E_IDEMPOTENCY_KEY_REUSED": 409,
        "E_QUOTA_EXCEEDED": 409,
        "E_RATE_LIMITED": 429,
        "E_TOO_MANY_STREAMS": 429,
        "E_INTERNAL": 500,
        "E_STORAGE_ERROR": 500,
        "E_AUTH_UNAVAILABLE": 503,
        "E_DEPENDENCY_UNAVAILABLE": 503,
    }
)


def status_for(code: str) -> int:
    return HTTP_STATUS.get(code, 500)
