"""Translate database failures into domain errors, in one place.

Constraint names come from the naming convention, so a violated constraint maps to a stable
domain code; an unreachable database becomes `E_DEPENDENCY_UNAVAILABLE`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import asyncpg
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from nexus.errors import Conflict, DependencyUnavailable, NexusError

# What asyncpg raises itself, for statements run on the driver connection directly
# (`nexus.db.raw`); through SQLAlchemy the same failures arrive wrapped in `DBAPIError`.
# InternalClientError: the connection's protocol state is broken, e.g. the server ended
# the session (its FATAL message arrived) between two statements.
_DRIVER_CONNECTION_ERRORS = asyncpg.InterfaceError | asyncpg.exceptions.InternalClientError
_DRIVER_ERRORS = asyncpg.PostgresError | _DRIVER_CONNECTION_ERRORS

# constraint name -> (code, client-safe message). Routes may add more specific handling.
CONSTRAINT_ERRORS: Mapping[str, tuple[str, str]] = {
    "ck_libraries_name_length": ("E_NAME_INVALID", "name must be 1 to 100 characters"),
    "uix_library_invitations_one_pending": (
        "E_INVITE_ALREADY_EXISTS",
        "a pending invitation for this user already exists",
    ),
    "ck_library_invitations_not_self": ("E_INVALID_REQUEST", "you cannot invite yourself"),
    "pk_idempotency_keys": ("E_IDEMPOTENCY_KEY_REUSED", "idempotency key already used"),
}

# Connection exceptions (08), bad credentials (28), unknown database, too many
# connections, admin/crash shutdown, cannot connect now: the database is not usable.
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "28")
_UNAVAILABLE_SQLSTATES = {"3D000", "53300", "57P01", "57P02", "57P03"}


def _sqlstate(exc: BaseException) -> str | None:
    orig: Any = getattr(exc, "orig", None)
    for candidate in (exc, orig, getattr(orig, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if code:
            return str(code)
    return None


def constraint_name(exc: BaseException) -> str | None:
    orig: Any = getattr(exc, "orig", None)
    for candidate in (orig, getattr(orig, "__cause__", None)):
        name = getattr(candidate, "constraint_name", None)
        if name:
            return str(name)
    return None


def is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, OSError | TimeoutError | ConnectionError | PoolTimeoutError):
        return True
    if isinstance(exc, InterfaceError | OperationalError | _DRIVER_CONNECTION_ERRORS):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    state = _sqlstate(exc)
    if state is None:
        return False
    return state in _UNAVAILABLE_SQLSTATES or state.startswith(_UNAVAILABLE_SQLSTATE_CLASSES)


# Deadlock detected / serialization failure: the transaction may simply be retried.
_RETRYABLE_SQLSTATES = {"40P01", "40001"}


def is_retryable_conflict(exc: BaseException) -> bool:
    return _sqlstate(exc) in _RETRYABLE_SQLSTATES


def translate(exc: BaseException) -> NexusError | None:
    """The domain error for a database exception, or None if it is not one we know."""
    if isinstance(exc, DBAPIError | asyncpg.PostgresError) and is_retryable_conflict(exc):
        return NexusError(
            "E_DEPENDENCY_UNAVAILABLE",
            "a transient database conflict occurred; retry the request",
            retry_after=1,
        )
    if isinstance(exc, IntegrityError):
        name = constraint_name(exc)
        if name is not None and name in CONSTRAINT_ERRORS:
            code, message = CONSTRAINT_ERRORS[name]
            return (
                Conflict(code, message)
                if code.startswith("E_INVITE")
                else NexusError(code, message)
            )
        return None
    if isinstance(
        exc, DBAPIError | OSError | TimeoutError | PoolTimeoutError | _DRIVER_ERRORS
    ) and (is_connection_error(exc)):
        return DependencyUnavailable("the database is unavailable")
    return None


@contextlib.asynccontextmanager
async def translate_db_errors() -> AsyncIterator[None]:
    """Re-raise known database failures as `NexusError`s; leave the rest untouched."""
    try:
        yield
    except NexusError:
        raise
    except Exception as exc:
        domain = translate(exc)
        if domain is None:
            raise
        raise domain from exc
