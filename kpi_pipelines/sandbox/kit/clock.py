"""The simulated clock every simulator runs on.

`now()` is the simulated wall clock that drives data (which objects exist, restatement, quota
windows): it stands still at `start` and moves only with `advance()`/`advance_to()`, unless
`realtime` is set, when real elapsed time is added too. `monotonic()` drives lifetimes measured
in seconds (access tokens, per-minute windows): real monotonic time plus everything the clock
was advanced by, so a token expires both by waiting and by advancing.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta


class SimClock:
    """A clock that only moves forward; thread-safe (tests move it while a server reads it)."""

    def __init__(self, start: datetime, *, realtime: bool = False) -> None:
        if start.tzinfo is None:
            raise ValueError("the clock's start must be timezone-aware")
        self._start = start.astimezone(UTC)
        self._realtime = realtime
        self._origin = time.monotonic()
        self._advanced = 0.0
        self._lock = threading.Lock()

    @property
    def start(self) -> datetime:
        return self._start

    @property
    def realtime(self) -> bool:
        return self._realtime

    def _elapsed(self) -> float:
        elapsed = self._advanced
        if self._realtime:
            elapsed += time.monotonic() - self._origin
        return elapsed

    def now(self) -> datetime:
        with self._lock:
            return self._start + timedelta(seconds=self._elapsed())

    def timestamp(self) -> int:
        """`now()` in whole unix seconds (what APIs that speak unix time serve)."""
        with self._lock:
            return int(self._start.timestamp() + self._elapsed())

    def monotonic(self) -> float:
        with self._lock:
            return time.monotonic() + self._advanced

    def advance(self, *, hours: float = 0, minutes: float = 0, seconds: float = 0) -> datetime:
        """Move forward by the sum of the given amounts; returns the new `now()`."""
        delta = hours * 3600 + minutes * 60 + seconds
        if delta < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._advanced += delta
            return self._start + timedelta(seconds=self._elapsed())

    def advance_to(self, instant: datetime | int) -> datetime:
        """Move forward to `instant` (an aware datetime or unix seconds); staying put is allowed."""
        if isinstance(instant, datetime):
            if instant.tzinfo is None:
                raise ValueError("advance_to needs a timezone-aware datetime")
            target = instant.timestamp()
        else:
            target = float(instant)
        with self._lock:
            delta = target - (self._start.timestamp() + self._elapsed())
            if delta < 0:
                raise ValueError("the clock only moves forward")
            self._advanced += delta
            return self._start + timedelta(seconds=self._elapsed())
