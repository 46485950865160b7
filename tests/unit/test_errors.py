"""SPEC §2: every HTTP-facing code has exactly its status; stored codes are known."""

from __future__ import annotations

import pytest

from nexus.errors import (
    CODES,
    STORED_CODES,
    Conflict,
    DependencyUnavailable,
    ErrorKind,
    Forbidden,
    InvalidRequest,
    JobFailure,
    NexusError,
    NotFound,
    TerminalError,
    TransientError,
    Unauthenticated,
)
from web.statuses import HTTP_STATUS, status_for

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
    # added by this wave (SPEC §2, §10, §11)
    "E_PAYLOAD_TOO_LARGE": 413,
    "E_QUOTA_EXCEEDED": 409,
    "E_TOO_MANY_STREAMS": 429,
    "E_SEARCH_QUERY_INVALID": 400,
    # operator cancel of a finished job (SPEC §10 "Cancel and retention"; docs/operations.md)
    "E_JOB_NOT_CANCELLABLE": 409,
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
    "E_CANCELLED",
    "E_INTERNAL",
    # the worker fails a media whose stored URL cannot be fetched with it
    "E_INVALID_URL",
}


def test_table_matches_spec_exactly() -> None:
    assert HTTP_STATUS == SPEC_TABLE


@pytest.mark.parametrize(("code", "status"), sorted(SPEC_TABLE.items()))
def test_each_code_maps_to_its_status(code: str, status: int) -> None:
    assert status_for(code) == status
    assert code in CODES


def test_stored_codes_match_spec() -> None:
    assert set(STORED_CODES) == SPEC_STORED


def test_every_code_is_either_answered_or_stored() -> None:
    assert set(CODES) == set(HTTP_STATUS) | set(STORED_CODES)


def test_unknown_code_is_refused_and_maps_to_500() -> None:
    with pytest.raises(ValueError, match="unknown error code"):
        NexusError("E_MADE_UP", "x")
    with pytest.raises(ValueError, match="unknown error code"):
        TerminalError("E_MADE_UP", "x")
    assert status_for("E_MADE_UP") == 500


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("E_INVALID_REQUEST", ErrorKind.INVALID),
        ("E_UNAUTHENTICATED", ErrorKind.UNAUTHENTICATED),
        ("E_FORBIDDEN", ErrorKind.FORBIDDEN),
        ("E_NOT_FOUND", ErrorKind.NOT_FOUND),
        ("E_INVITE_NOT_PENDING", ErrorKind.CONFLICT),
        ("E_RATE_LIMITED", ErrorKind.LIMITED),
        ("E_DEPENDENCY_UNAVAILABLE", ErrorKind.UNAVAILABLE),
        ("E_INTERNAL", ErrorKind.INTERNAL),
        ("E_FETCH_TIMEOUT", ErrorKind.UNAVAILABLE),
    ],
)
def test_kinds(code: str, kind: ErrorKind) -> None:
    assert NexusError(code, "m").kind is kind


def test_helpers_carry_their_codes() -> None:
    assert InvalidRequest("x", details=[1]).code == "E_INVALID_REQUEST"
    assert InvalidRequest("x", details=[1]).details == [1]
    assert NotFound().code == "E_NOT_FOUND"
    assert status_for(NotFound(code="E_MEDIA_NOT_FOUND").code) == 404
    assert status_for(Forbidden().code) == 403
    assert status_for(Unauthenticated().code) == 401
    assert status_for(DependencyUnavailable().code) == 503
    assert status_for(Conflict("E_INVITE_NOT_PENDING", "x").code) == 409


def test_job_failures_share_the_root_and_say_if_terminal() -> None:
    transient = TransientError("E_FETCH_TIMEOUT", "slow")
    terminal = TerminalError("E_PDF_ENCRYPTED", "locked")
    assert isinstance(transient, JobFailure) and isinstance(transient, NexusError)
    assert (transient.terminal, terminal.terminal) == (False, True)


def test_retry_after_defaults_to_none_and_is_kept() -> None:
    assert NexusError("E_INTERNAL", "x").retry_after is None
    assert NexusError("E_RATE_LIMITED", "x", retry_after=3).retry_after == 3
