"""What our own code reads of a request, read once when the request starts.

Quart's `request`, `g` and `current_app` are context-local proxies: every attribute read
through one looks the context up again (~3 µs each on the 2-core machine of
bench/api.py), and werkzeug's `Headers.get` builds an exception for each header that is
absent. A request touched them some twenty times in our hooks, guards and hot reads
(docs/performance.md). The frame holds what those need (the app's state, the ids, the two
headers we check, the verified viewer), read from the ASGI scope in one pass, and lives in
a context variable of the request's task: Quart runs each request in a task of its own, so
a frame never outlives its request or reaches another one.
"""

from __future__ import annotations

import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

from quart import Request

from web import request_ids

if TYPE_CHECKING:
    from nexus.users.service import CurrentUser
    from web.state import NexusState

_REQUEST_ID = request_ids.REQUEST_ID_HEADER.lower().encode()
_CORRELATION_ID = request_ids.CORRELATION_ID_HEADER.lower().encode()
_INTERNAL = b"x-nexus-internal"
_AUTHORIZATION = b"authorization"
_WANTED = frozenset({_REQUEST_ID, _CORRELATION_ID, _INTERNAL, _AUTHORIZATION})


@dataclass(slots=True, eq=False)
class RequestFrame:
    request: Request
    state: NexusState
    started: float
    request_id: str
    correlation_id: str
    # The first value of each header as sent, or None when absent.
    internal_header: str | None
    authorization: str | None
    # Set by `@viewer_required` once the JWT is verified.
    viewer_id: uuid.UUID | None = None
    # Set by `@user_required` once the JWT is verified and the user bootstrapped.
    user: CurrentUser | None = None


_current: ContextVar[RequestFrame | None] = ContextVar("nexus_request_frame", default=None)


def _headers(request: Request) -> dict[bytes, str]:
    """The first value of each header we read (names lower-cased, as ASGI sends them)."""
    found: dict[bytes, str] = {}
    for name, value in request.scope["headers"]:
        key = bytes(name).lower()
        if key in _WANTED and key not in found:
            found[key] = bytes(value).decode("latin-1")
    return found


def begin(request: Request, state: NexusState) -> RequestFrame:
    """The frame of `request`, made current, with its ids bound (`request_ids.bind`)."""
    headers = _headers(request)
    request_id, correlation_id = request_ids.resolve(
        headers.get(_REQUEST_ID), headers.get(_CORRELATION_ID)
    )
    frame = RequestFrame(
        request=request,
        state=state,
        started=time.perf_counter(),
        request_id=request_id,
        correlation_id=correlation_id,
        internal_header=headers.get(_INTERNAL),
        authorization=headers.get(_AUTHORIZATION),
    )
    _current.set(frame)
    request_ids.bind(request_id, correlation_id)
    return frame


def current() -> RequestFrame | None:
    """The frame of the request this task serves, or None outside one."""
    return _current.get()


def required(outside: str = "no request is being served") -> RequestFrame:
    """The current frame; RuntimeError(`outside`) when this task serves no request."""
    frame = _current.get()
    if frame is None:
        raise RuntimeError(outside)
    return frame
