"""Messages per second per agent over a sliding minute (agents/rates.py)."""

from __future__ import annotations

import pytest

from agents.rates import RateWindow


class Clock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def test_a_declared_agent_reports_zero_before_its_first_message() -> None:
    rates = RateWindow(clock=Clock())
    rates.declare("ingest")
    assert rates.snapshot() == {"ingest": {"messages_last_minute": 0, "messages_per_second": 0.0}}


def test_the_rate_is_over_the_minute_once_the_worker_is_older_than_it() -> None:
    clock = Clock()
    rates = RateWindow(clock=clock)
    clock.now += 100
    for _ in range(30):
        rates.add("backfill")
        clock.now += 1
    snap = rates.snapshot()["backfill"]
    assert snap["messages_last_minute"] == 30
    assert snap["messages_per_second"] == pytest.approx(0.5)


def test_messages_older_than_the_window_drop_out() -> None:
    clock = Clock()
    rates = RateWindow(window_seconds=60, clock=clock)
    clock.now += 120
    rates.add("backfill", 10)
    clock.now += 30
    rates.add("backfill", 2)
    assert rates.snapshot()["backfill"]["messages_last_minute"] == 12
    clock.now += 31  # the first ten are 61 s old now
    assert rates.snapshot()["backfill"]["messages_last_minute"] == 2
    clock.now += 60
    assert rates.snapshot()["backfill"] == {"messages_last_minute": 0, "messages_per_second": 0}


def test_a_young_worker_divides_by_its_age_not_by_the_minute() -> None:
    clock = Clock()
    rates = RateWindow(clock=clock)
    clock.now += 10
    rates.add("ingest", 20)
    assert rates.snapshot()["ingest"]["messages_per_second"] == pytest.approx(2.0)
    # Never by less than a second, so the first message is not an absurd spike.
    fresh = RateWindow(clock=Clock())
    fresh.add("ingest")
    assert fresh.snapshot()["ingest"]["messages_per_second"] == pytest.approx(1.0)


def test_agents_are_counted_apart() -> None:
    clock = Clock()
    rates = RateWindow(clock=clock)
    clock.now += 60
    rates.add("backfill", 3)
    rates.add("ingest", 6)
    snap = rates.snapshot()
    assert snap["backfill"]["messages_last_minute"] == 3
    assert snap["ingest"]["messages_per_second"] == pytest.approx(0.1)
