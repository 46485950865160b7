"""Messages per second per agent over the last minute, for `/nexus/stats` (`rates`).

A sliding window of one-second buckets per agent: recording a message is O(1), reading
sums at most `window_seconds` buckets. While the worker is younger than the window, the
rate is over its age (at least one second), so a fresh worker does not report a tenth of
its real rate.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

WINDOW_SECONDS = 60


class RateWindow:
    def __init__(
        self, window_seconds: int = WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window_seconds = window_seconds
        self._clock = clock
        self._started = clock()
        # name -> [second, count] buckets, oldest first, none older than the window
        self._buckets: dict[str, deque[list[int]]] = {}

    def declare(self, name: str) -> None:
        """Report `name` (at 0) before its first message."""
        self._buckets.setdefault(name, deque())

    def add(self, name: str, count: int = 1) -> None:
        second = int(self._clock())
        buckets = self._buckets.setdefault(name, deque())
        if buckets and buckets[-1][0] == second:
            buckets[-1][1] += count
        else:
            buckets.append([second, count])
        self._trim(buckets, second)

    def _trim(self, buckets: deque[list[int]], second: int) -> None:
        while buckets and buckets[0][0] <= second - self.window_seconds:
            buckets.popleft()

    def snapshot(self) -> dict[str, dict[str, float | int]]:
        """Per name: messages in the window and messages per second over it."""
        now = self._clock()
        second = int(now)
        span = min(float(self.window_seconds), max(now - self._started, 1.0))
        out: dict[str, dict[str, float | int]] = {}
        for name, buckets in sorted(self._buckets.items()):
            self._trim(buckets, second)
            count = sum(n for _, n in buckets)
            out[name] = {"messages_last_minute": count, "messages_per_second": count / span}
        return out
