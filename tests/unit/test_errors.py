"""SPEC §2: every HTTP-facing code has exactly its status; stored codes are known."""

from __future__ import annotations

import pytest

from nexus.errors import (
    HTTP_STATUS,
    STORED_CODES,
    Conflict,
    DependencyUnavailable,
    ErrorKind,
    Forbidden,
    InvalidRequest,
    NexusError,
    NotFound,
    Unauthenticated,
    status_for,
)

# Copied from SPEC.md §2 on purpose: the table is the contract, so a change must be made
# in both places.
SPEC_TABLE: dict[str, int] = {
    "E_INVALID_REQUEST": 400,
    "E_NAME_INVALID": 400,
    "E_INVALID_CURSOR": 400,
    "E_INVALID_URL": 400,
    "E_INVALID_CONTENT_TYPE": 400,
    "E_INVALID_FILE_TYPE": 400,
    "E_FILE_TOO_LARGE": 413,
    "E_STORAGE_MISSING": 400,
    "E_UNAUTHENTICATED": 401,
    "E_INTERNAL_ONLY": 403,
    "E_FORBIDDEN": 403,
    "E_DEFAULT_LIBRARY_FORBIDDEN": 403,
    "E_LAST_ADMIN_FORBIDDEN": 403,
    "E_OWNER_REQUIRED": 403,
    "E_OWNER_EXIT_FORBIDDEN": 403,
    "E_SSRF_BLOCKED": 403,
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
    "E_METHOD_NOT_ALLOWED": 405,
    "E_NOT_FOUND": 404,
    "E_LIBRARY_NOT_FOUND": 404,
    "E_MEDIA_NOT_FOUND": 404,
    "E_USER_NOT_FOUND": 404,
    "E_INVITE_NOT_FOUND": 404,
}

SPEC_STORED = {
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


def test_table_matches_spec_exactly() -> None:
    assert HTTP_STATUS == SPEC_TABLE


@pytest.mark.parametrize(("code", "status"), sorted(SPEC_TABLE.items()))
def test_each_code_maps_to_its_status(code: str, status: int) -> None:
    assert status_for(code) == status
    assert NexusError(code, "m").status == status


def test_stored_codes_match_spec() -> None:
    assert set(STORED_CODES) == SPEC_STORED


def test_unknown_code_is_refused_and_maps_to_500() -> None:
    with pytest.raises(ValueError, match="unknown error code"):
        NexusError("E_MADE_UP", "x")
    assert status_for("E_MADE_UP") == 500


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("E_INVALID_REQUEST", ErrorKind.INVALID),
        ("E_UNAUTHENTICATED", ErrorKind.FORBIDDEN),
        ("E_FORBIDDEN", ErrorKind.FORBIDDEN),
        ("E_NOT_FOUND", ErrorKind.NOT_FOUND),
        ("E_INVITE_NOT_PENDING", ErrorKind.CONFLICT),
        ("E_RATE_LIMITED", ErrorKind.UNAVAILABLE),
        ("E_DEPENDENCY_UNAVAILABLE", ErrorKind.UNAVAILABLE),
        ("E_INTERNAL", ErrorKind.INTERNAL),
        ("E_FETCH_TIMEOUT", ErrorKind.INTERNAL),  # stored-only codes are not HTTP statuses
    ],
)
def test_kinds(code: str, kind: ErrorKind) -> None:
    assert NexusError(code, "m").kind is kind


def test_helpers_carry_their_codes() -> None:
    assert InvalidRequest("x", details=[1]).code == "E_INVALID_REQUEST"
    assert InvalidRequest("x", details=[1]).details == [1]
    assert NotFound().code == "E_NOT_FOUND"
    assert NotFound(code="E_MEDIA_NOT_FOUND").status == 404
    assert Forbidden().status == 403
    assert Unauthenticated().status == 401
    assert DependencyUnavailable().status == 503
    assert Conflict("E_INVITE_NOT_PENDING", "x").status == 409


def test_headers_default_empty_and_are_kept() -> None:
    assert NexusError("E_INTERNAL", "x").headers == {}
    err = NexusError("E_RATE_LIMITED", "x", headers={"Retry-After": "3"})
    assert err.headers == {"Retry-After": "3"}
