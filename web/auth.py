"""Access control for routes: internal header, user JWT (+ bootstrap), operator keys.

Order on every request (SPEC §1): the internal header is checked first (by the app when
the request starts, `web.app.NexusQuart`, so it also guards unknown routes), then the
route's own guard: `@user_required` (bearer JWT) or `@operator_required(role)` (bearer
operator key: 401 → per-key rate limit 429 → role 403; every refusal is logged and
written to `operator_actions`).
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, NoReturn, ParamSpec, TypeVar

import structlog
from quart import Quart, g, request

from nexus import ratelimit
from nexus.db.tx import autocommit, transaction
from nexus.errors import NexusError, Unauthenticated
from nexus.operators.roles import Role
from nexus.operators.service import (
    OperatorIdentity,
    Refusal,
    find_key,
    record_refusal,
    role_too_low,
)
from nexus.users.service import CurrentUser, default_library_of, ensure_user
from web import frame
from web.frame import RequestFrame
from web.openapi import INTERNAL_EXEMPT_ATTR, OPERATOR, USER, guard
from web.state import nexus_state

log = structlog.get_logger("nexus.web.auth")

INTERNAL_HEADER = "X-Nexus-Internal"

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])


class InternalOnlyError(NexusError):
    def __init__(self) -> None:
        super().__init__("E_INTERNAL_ONLY", "this API is only reachable through the BFF")


def internal_exempt(func: F) -> F:
    """Mark a view as callable without the internal header (ops routes, pre-signed URLs)."""
    setattr(func, INTERNAL_EXEMPT_ATTR, True)
    return func


def _is_exempt(app: Quart, current: RequestFrame) -> bool:
    endpoint = current.request.endpoint
    if endpoint is None:
        return False
    if endpoint in current.state.internal_exempt_endpoints:
        return True
    view = app.view_functions.get(endpoint)
    return bool(getattr(view, INTERNAL_EXEMPT_ATTR, False))


def check_internal_header(app: Quart, current: RequestFrame) -> None:
    """403 E_INTERNAL_ONLY unless the header carries the shared secret (run by the app
    when a request starts, after the request ids are bound)."""
    secret = current.state.settings.internal_secret
    if secret is None or _is_exempt(app, current):
        return
    sent = current.internal_header or ""
    if not hmac.compare_digest(sent.encode(), secret.get_secret_value().encode()):
        raise InternalOnlyError()


def bearer_token() -> str:
    """The bearer credential of this request; 401 when absent or malformed."""
    header = frame.required().authorization or ""
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("a bearer token is required")
    return token


async def authenticate_user() -> CurrentUser:
    """Verify the JWT and bootstrap the user (own short transaction, committed at once)."""
    current = frame.required()
    if current.user is not None:
        return current.user
    state = current.state
    user_id = await state.verifier.verify(bearer_token())
    # The common case (already bootstrapped) is one SELECT without a transaction; only a
    # user with something missing pays for one.
    async with state.reading() as reader:
        library_id = await default_library_of(reader, user_id)
    if library_id is not None:
        user = CurrentUser(user_id=user_id, default_library_id=library_id)
    else:
        user = await bootstrap(user_id)
    current.user = user
    return user


def viewer_required(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """`@user_required` for reads whose statement also checks the bootstrap (see
    `web.uow.read_as_viewer`): the JWT is verified here, the bootstrap costs no statement
    of its own. The view reads the user id with `viewer_id()`."""

    @wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        current = frame.required()
        current.viewer_id = await current.state.verifier.verify(bearer_token())
        return await func(*args, **kwargs)

    return guard(wrapper, ("E_UNAUTHENTICATED", "E_AUTH_UNAVAILABLE"), USER)


def viewer_id() -> uuid.UUID:
    """The verified user id of this request (inside `@viewer_required` views)."""
    user_id = frame.required("viewer_id() outside a request").viewer_id
    if user_id is None:
        raise RuntimeError("viewer_id() outside a @viewer_required view")
    return user_id


async def bootstrap(user_id: uuid.UUID) -> CurrentUser:
    """Create whatever of the user's rows is missing (own short transaction)."""
    async with transaction(nexus_state().sessionmaker) as session:
        return await ensure_user(session, user_id)


def current_user() -> CurrentUser:
    """The authenticated user of this request (only inside `@user_required` views)."""
    user = frame.required("current_user() outside a request").user
    if user is None:
        raise RuntimeError("current_user() outside a @user_required view")
    return user


def user_required(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Require a valid user JWT; the view reads the user with `current_user()`."""

    @wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        await authenticate_user()
        return await func(*args, **kwargs)

    return guard(wrapper, ("E_UNAUTHENTICATED", "E_AUTH_UNAVAILABLE"), USER)


def operator_required(
    role: Role,
) -> Callable[[Callable[..., Awaitable[R]]], Callable[..., Awaitable[R]]]:
    """Require an operator key of at least `role`; passes `operator: OperatorIdentity`.

    Order: 401 E_UNAUTHENTICATED for a missing/unknown/disabled key → 429 E_RATE_LIMITED
    (with Retry-After) past the key's per-minute limit for its role → 403 E_FORBIDDEN for a
    role too low. The key's `last_used_at` is updated in its own short transaction.
    """

    def decorator(func: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
        @wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> R:
            identity = await authorize_operator(role)
            g.nexus_operator = identity
            return await func(*args, operator=identity, **kwargs)

        return guard(wrapper, ("E_UNAUTHENTICATED", "E_FORBIDDEN", "E_RATE_LIMITED"), OPERATOR)

    return decorator


def _route() -> str:
    rule = request.url_rule.rule if request.url_rule is not None else request.path
    return f"{request.method} {rule}"


async def authorize_operator(required: Role) -> OperatorIdentity:
    """The operator of this request, or the refusal (see `operator_required`), recorded."""
    state = nexus_state()
    route = _route()
    try:
        token = bearer_token()
    except Unauthenticated as exc:
        await _refuse(Refusal("E_UNAUTHENTICATED", route, required), exc)
    async with transaction(state.sessionmaker) as session:
        identity = await find_key(session, token)
    if identity is None:
        await _refuse(
            Refusal("E_UNAUTHENTICATED", route, required, token=token),
            Unauthenticated("unknown or disabled operator key"),
        )
    # Its own autocommit statement: refused hits count too, and the row is never held.
    async with autocommit(state.sessionmaker) as conn:
        hit = await ratelimit.hit(
            conn,
            identity.key_id,
            ratelimit.OPERATOR_BUCKET,
            limit=state.settings.operator_rate_limit(identity.role.value),
            counters=ratelimit.OPERATOR_KEYS,
        )
    if not hit.allowed:
        # Logged every time; audited once per key and window (the first refused hit), so
        # a runaway script cannot flood the ledger.
        await _refuse(
            Refusal("E_RATE_LIMITED", route, required, token=token, identity=identity),
            ratelimit.RateLimited(hit.retry_after),
            audit=hit.hits == hit.limit + 1,
        )
    if not identity.role.allows(required):
        await _refuse(
            Refusal("E_FORBIDDEN", route, required, token=token, identity=identity),
            role_too_low(identity),
        )
    return identity


async def _refuse(refusal: Refusal, error: NexusError, *, audit: bool = True) -> NoReturn:
    """Log the refusal, write its audit row (own transaction), then raise `error`."""
    log.warning(
        "operator request refused",
        code=refusal.code,
        route=refusal.route,
        **{k: v for k, v in refusal.details().items() if k != "route"},
    )
    if audit:
        try:
            async with transaction(nexus_state().sessionmaker) as session:
                await record_refusal(session, refusal, request_id=g.get("request_id"))
        except Exception:
            # The request is refused either way; a failed audit write must not turn the
            # refusal into a 500 (it is logged above and here).
            log.exception("could not record an operator refusal", route=refusal.route)
    raise error
