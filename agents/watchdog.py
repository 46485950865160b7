"""The watchdog: a wedged worker is restarted instead of holding its partitions forever.

A thread (so it still runs when the event loop is blocked) checks twice a second, against
`NEXUS_STALL_SECONDS`:
- the event loop is blocked: the loop's ticker has not run for that long;
- the consumer makes no progress while its partitions have lag: unread messages wait, no
  message is in flight and none was taken or finished for that long;
- a rebalance does not finish: the app has been rebalancing for that long.
On a stall it records why (readiness turns 503), logs it, and exits the process with
`EXIT_STALLED` after a short grace. Crashing is the recovery: all state is in Postgres,
leases are fenced, and `nexus agents` starts a fresh worker with back-off.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from aiokafka import TopicPartition

from agents.context import AgentContext

log = logging.getLogger(__name__)

EXIT_STALLED = 70
TICK_SECONDS = 0.5


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None
    highwater: int | None
    lag: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fetch_position(consumer: Any, tp: Any) -> int | None:
    """The aiokafka fetcher's position of `tp` (next offset it will fetch), if valid."""
    try:
        aio = consumer._thread._ensure_consumer()
        assignment = aio._fetcher._subscriptions.subscription.assignment
        state = assignment.state_value(TopicPartition(tp.topic, tp.partition))
        if state is not None and state.has_valid_position:
            return int(state.position)
    except Exception:  # internals moved, or no consumer: the position is simply unknown
        return None
    return None


def partition_lags(app: Any, start_offsets: dict[Any, int]) -> list[PartitionLag]:
    """Lag of this worker's assigned partitions: fetch high watermark - committed offset.

    The high watermark comes from the consumer's last fetch response (the broker's
    ListOffsets answer is not trusted: Tansu's is wrong). Before the group has committed
    anything on a partition, the offset the fetcher started from (remembered in
    `start_offsets` the first time it is seen) stands in for the committed offset; it can
    only under-estimate lag, never invent it."""
    consumer = app.consumer
    out = []
    assigned = sorted(consumer.assignment())
    for tp in list(start_offsets):
        if tp not in assigned:
            del start_offsets[tp]
    for tp in assigned:
        highwater = consumer.highwater(tp)
        committed = consumer._committed_offset.get(tp)
        if tp not in start_offsets:
            first = _fetch_position(consumer, tp)
            if first is not None:
                start_offsets[tp] = first
        if committed is None:
            read = consumer._read_offset.get(tp)
            committed = read + 1 if read is not None else start_offsets.get(tp)
        lag = None if highwater is None or committed is None else max(0, highwater - committed)
        out.append(PartitionLag(tp.topic, tp.partition, committed, highwater, lag))
    return out


@dataclass
class Observed:
    """What the loop's ticker saw last (written in the loop, read by the thread)."""

    tick_at: float
    rebalancing_since: float | None = None
    lag_waiting: bool = False


def judge(now: float, seen: Observed, ctx: AgentContext, stall_seconds: float) -> str | None:
    """Why this worker is wedged, or None (pure, so it is tested without a worker)."""
    if now - seen.tick_at > stall_seconds:
        return f"event loop blocked for {now - seen.tick_at:.0f}s"
    if seen.rebalancing_since is not None and now - seen.rebalancing_since > stall_seconds:
        return f"rebalance not finished after {now - seen.rebalancing_since:.0f}s"
    idle_for = now - ctx.last_progress
    if seen.lag_waiting and ctx.inflight == 0 and idle_for > stall_seconds:
        return f"consumer made no progress for {idle_for:.0f}s while its partitions have lag"
    return None


class Watchdog:
    def __init__(
        self,
        app: Any,
        ctx: AgentContext,
        *,
        stall_seconds: float,
        on_stall: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.ctx = ctx
        self.stall_seconds = stall_seconds
        self.seen = Observed(tick_at=time.monotonic())
        self.on_stall = on_stall or self._exit
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="nexus-watchdog", daemon=True)
        self._ticker: asyncio.Task[None] | None = None
        self._start_offsets: dict[Any, int] = {}

    def start(self) -> None:
        self._ticker = asyncio.ensure_future(self._tick())
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.cancel()

    async def _tick(self) -> None:
        while True:
            now = time.monotonic()
            rebalancing = bool(getattr(self.app, "rebalancing", False))
            since = self.seen.rebalancing_since
            try:
                lags = partition_lags(self.app, self._start_offsets) if not rebalancing else []
            except Exception:  # consumer not there yet / going away
                lags = []
            self.ctx.lags = lags
            self.seen = Observed(
                tick_at=now,
                rebalancing_since=(since or now) if rebalancing else None,
                lag_waiting=any(p.lag for p in lags),
            )
            await asyncio.sleep(TICK_SECONDS)

    def _watch(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            if self.ctx.draining:
                continue  # a drain is a planned stop with its own deadline
            reason = judge(time.monotonic(), self.seen, self.ctx, self.stall_seconds)
            if reason is not None:
                self.ctx.stall_reason = reason
                self.on_stall(reason)
                return

    def _exit(self, reason: str) -> None:
        log.error(
            "watchdog: worker wedged (%s); exiting for a restart",
            reason,
            extra={"reason": reason, "worker_id": self.ctx.worker_id},
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        # Let readiness answer 503 for a moment if the loop still runs, then go.
        time.sleep(1.0)
        os._exit(EXIT_STALLED)
