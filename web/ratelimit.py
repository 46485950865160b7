"""`@rate_limited(bucket)`: the per-user limit of SPEC §2 on a user route.

Place it under `@user_required` (it needs the user). The hit is counted by one autocommit
statement before the view runs, so every authenticated attempt counts (a
refused one, an idempotent replay, one that later fails validation in the service) and
the counter row is never locked for the length of a request. Over the limit → 429
E_RATE_LIMITED with `Retry-After` (seconds until the window ends).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from nexus import ratelimit
from nexus.db.tx import autocommit
from web.auth import current_user
from web.openapi import guard
from web.state import nexus_state

P = ParamSpec("P")
R = TypeVar("R")


async def enforce(bucket: str) -> None:
    """Count a hit of the current user on `bucket`; raise 429 past the limit."""
    state = nexus_state()
    async with autocommit(state.sessionmaker) as conn:
        result = await ratelimit.hit(
            conn,
            current_user().user_id,
            bucket,
            limit=state.settings.rate_limit_ingest_per_minute,
        )
    if not result.allowed:
        raise ratelimit.RateLimited(result.retry_after)


def rate_limited(
    bucket: str = ratelimit.INGEST_BUCKET,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    def decorate(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @wraps(func)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            await enforce(bucket)
            return await func(*args, **kwargs)

        return guard(wrapper, ("E_RATE_LIMITED",), None)

    return decorate
