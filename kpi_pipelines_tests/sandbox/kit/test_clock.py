"""The kit's clock: fixed unless asked to run, forward only, and lifetimes that age both by
waiting and by advancing."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from kpi_pipelines.sandbox.kit import SimClock

START = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)


def test_a_fixed_clock_stands_still_until_advanced() -> None:
    clock = SimClock(START)
    time.sleep(0.02)
    assert clock.now() == START
    assert clock.timestamp() == int(START.timestamp())
    assert clock.advance(hours=1, minutes=30, seconds=5) == START + timedelta(seconds=5405)
    assert clock.now() == START + timedelta(seconds=5405)


def test_a_realtime_clock_runs_with_real_time_and_advances_too() -> None:
    clock = SimClock(START, realtime=True)
    time.sleep(0.05)
    ran = clock.now() - START
    assert timedelta(seconds=0.04) < ran < timedelta(seconds=5)
    clock.advance(hours=2)
    assert clock.now() - START >= timedelta(hours=2, seconds=0.04)


def test_advance_to_moves_forward_only() -> None:
    clock = SimClock(START)
    later = START + timedelta(days=3)
    assert clock.advance_to(later) == later
    assert clock.advance_to(int(later.timestamp())) == later  # staying put is allowed
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance_to(START)
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(seconds=-1)
    with pytest.raises(ValueError, match="timezone-aware"):
        clock.advance_to(datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        SimClock(datetime(2025, 1, 1))


def test_monotonic_time_includes_what_the_clock_was_advanced_by() -> None:
    clock = SimClock(START)
    before = clock.monotonic()
    clock.advance(minutes=1)
    assert clock.monotonic() - before >= 60
