"""A server-side deadline on every request: a hung dependency costs a 503, never a worker.

`DeadlineQuart.dispatch_request` runs the view (its guards included: authentication and
rate limiting wait on the database too) under `NEXUS_REQUEST_TIMEOUT_SECONDS`; past it the
view is cancelled (its transaction rolls back) and the client gets 503
`E_DEPENDENCY_UNAVAILABLE` with `Retry-After: 1`. Not under it:

- the body of `GET /media/{id}/events`: the view returns at once and the stream is sent
  afterwards, bounded by `NEXUS_SSE_MAX_SECONDS` (web/routes/media_events.py);
- the pre-signed upload PUT, which streams a file of up to 100 MiB for as long as the
  client needs: it is bounded instead by `idle_bounded`, the same number of seconds
  without receiving a byte;
- the admin bulk requeue (`POST /internal/libraries/backfill-jobs/requeue-bulk`), paced
  on purpose (`limit / rate_per_second`, up to 10,000 jobs): cutting it would leave a
  half-done run without its summary audit row. Admin keys only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable
from typing import TypeVar

import structlog
from quart import Quart
from quart.ctx import RequestContext
from quart.globals import request_ctx
from quart.typing import ResponseReturnValue

from nexus.errors import NexusError

T = TypeVar("T")

log = structlog.get_logger("nexus.web")

# Endpoints that bound themselves (see the module docstring).
SELF_BOUNDED_ENDPOINTS = frozenset({"uploads.put_upload", "backfill_jobs.requeue_bulk"})


class DeadlineExceededError(NexusError):
    def __init__(self, seconds: float, what: str = "the request did not complete") -> None:
        super().__init__("E_DEPENDENCY_UNAVAILABLE", f"{what} within {seconds:g} s", retry_after=1)


class DeadlineQuart(Quart):
    """Quart whose views run under the app's request deadline."""

    request_timeout_seconds: float | None = None

    async def dispatch_request(
        self, request_context: RequestContext | None = None
    ) -> ResponseReturnValue:
        seconds = self.request_timeout_seconds
        request = (request_context or request_ctx).request
        if seconds is None or request.endpoint in SELF_BOUNDED_ENDPOINTS:
            return await super().dispatch_request(request_context)
        deadline = asyncio.timeout(seconds)
        try:
            async with deadline:
                return await super().dispatch_request(request_context)
        except TimeoutError:
            if not deadline.expired():
                raise  # the view's own timeout, not ours
            log.warning("request deadline exceeded", route=request.endpoint, seconds=seconds)
            raise DeadlineExceededError(seconds) from None


class WaitExpired(Exception):
    """`each_within`'s bound ran out (a timeout raised by the iterator itself propagates)."""


async def each_within(
    items: AsyncIterable[T], bound: Callable[[], asyncio.Timeout]
) -> AsyncGenerator[T, None]:
    """The items, each waited for under a fresh `bound()` only (never while the consumer
    handles the previous one). Raises `WaitExpired` when a bound expires."""
    iterator = aiter(items)
    while True:
        timeout = bound()
        try:
            async with timeout:
                item = await anext(iterator)
        except StopAsyncIteration:
            return
        except TimeoutError:
            if not timeout.expired():
                raise
            raise WaitExpired from None
        yield item


async def idle_bounded(chunks: AsyncIterable[bytes], idle_seconds: float) -> AsyncIterator[bytes]:
    """`chunks`, failing with 503 when none arrives for `idle_seconds`."""
    try:
        async for chunk in each_within(chunks, lambda: asyncio.timeout(idle_seconds)):
            yield chunk
    except WaitExpired:
        raise DeadlineExceededError(idle_seconds, "no bytes were received") from None
