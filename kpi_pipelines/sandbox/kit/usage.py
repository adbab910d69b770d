"""Call budgets on the simulated clock: how much of a rate limit a caller has used, so a
simulator can answer in its platform's own words.

    budget = CallBudget(clock, limit=200, window=timedelta(hours=1), rolling=True,
                        penalty=timedelta(minutes=5))
    usage = budget.charge((app_id, account_id), cost=1)   # refused calls are not counted
    if not usage.allowed: ...                              # the platform's throttle answer

How each platform renders a `Usage`:
- Meta: `X-Business-Use-Case-Usage` / `X-Ad-Account-Usage` JSON with `usage.percent` as
  `call_count` (or `acc_id_util_pct`) and `usage.minutes_to_regain` as
  `estimated_time_to_regain_access`; refused: HTTP 400 with code 17/80000/80004;
- X: `x-rate-limit-limit` = `usage.limit`, `x-rate-limit-remaining` = `usage.remaining`,
  `x-rate-limit-reset` = `usage.reset_at` (epoch seconds); refused: 429;
- LinkedIn: nothing on success; refused: 429 without Retry-After (daily windows that turn
  at midnight UTC: `window=timedelta(days=1)`, aligned).

Windows: fixed and `aligned` to the epoch (a daily window turns at 00:00 UTC), fixed from
the first call after the last window ended (`aligned=False`: X's 15-minute windows), or
`rolling` (the calls of the last `window`, as Meta decays usage). `penalty`: once a call is
refused, every call is refused for that long (Meta's blocks), whatever the window says.
`elapsed=True` measures the windows on the clock's `monotonic()` (real seconds plus every
advance) instead of its simulated wall time: a per-second limit (Notion's 3 requests a
second) that a client waits out in real time while a test's simulated day stands still;
`reset_at` is then in those seconds too.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import timedelta

from kpi_pipelines.sandbox.kit.clock import SimClock


@dataclass(frozen=True)
class Usage:
    """A caller's budget at one instant (after the call, when it was allowed)."""

    limit: int
    used: int
    reset_at: int  # unix seconds when capacity frees up (the window turns, the block ends)
    now: float
    allowed: bool

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    @property
    def percent(self) -> int:
        """Used, in whole percent of the limit (can pass 100 while blocked)."""
        return self.used * 100 // self.limit

    @property
    def seconds_to_regain(self) -> int:
        """0 while calls are allowed; else until the next call would be."""
        return 0 if self.allowed else max(1, math.ceil(self.reset_at - self.now))

    @property
    def minutes_to_regain(self) -> int:
        return math.ceil(self.seconds_to_regain / 60)


class CallBudget:
    """A rate limit per key (an app, an account, an (app, account) pair, an endpoint)."""

    def __init__(
        self,
        clock: SimClock,
        *,
        limit: int,
        window: timedelta,
        rolling: bool = False,
        aligned: bool = True,
        penalty: timedelta = timedelta(0),
        elapsed: bool = False,
    ) -> None:
        if limit < 1 or window <= timedelta(0) or penalty < timedelta(0):
            raise ValueError("a budget has a limit of 1 or more over a positive window")
        self.clock = clock
        self.limit = limit
        self.window = window.total_seconds()
        self.rolling = rolling
        self.aligned = aligned
        self.penalty = penalty.total_seconds()
        self.elapsed = elapsed
        self._lock = threading.Lock()
        self._calls: dict[Hashable, deque[tuple[float, int]]] = {}  # rolling: (at, cost)
        self._windows: dict[Hashable, tuple[float, int]] = {}  # fixed: (window start, used)
        self._blocked: dict[Hashable, float] = {}  # key -> blocked until

    def _now(self) -> float:
        return self.clock.monotonic() if self.elapsed else self.clock.now().timestamp()

    # -- the window's state -------------------------------------------------------------------
    def _state(self, key: Hashable, now: float) -> tuple[int, float]:
        """(used, when capacity frees up) for `key` at `now`."""
        if self.rolling:
            calls = self._calls.get(key, deque())
            while calls and calls[0][0] <= now - self.window:
                calls.popleft()
            used = sum(cost for _, cost in calls)
            frees, left = now, used
            for at, cost in calls:  # the oldest leave first
                if left < self.limit:
                    break
                left -= cost
                frees = at + self.window
            return used, frees
        start, used = self._current(key, now)
        return used, start + self.window

    def _current(self, key: Hashable, now: float) -> tuple[float, int]:
        """The fixed window `key` is in at `now` and what it used of it; a window that is
        not aligned starts with the first call counted in it."""
        start, used = self._windows.get(key, (now, 0))
        if self.aligned:
            current = now - now % self.window
            return (current, used) if current == start else (current, 0)
        return (start, used) if now < start + self.window else (now, 0)

    def _count(self, key: Hashable, now: float, cost: int) -> None:
        if self.rolling:
            self._calls.setdefault(key, deque()).append((now, cost))
        else:
            start, used = self._current(key, now)
            self._windows[key] = (start, used + cost)

    def _usage(self, key: Hashable, now: float, allowed: bool) -> Usage:
        used, frees = self._state(key, now)
        blocked = self._blocked.get(key, 0.0)
        reset = max(frees, blocked) if blocked > now else frees
        return Usage(self.limit, used, math.ceil(reset), now, allowed)

    # -- calls --------------------------------------------------------------------------------
    def charge(self, key: Hashable = None, cost: int = 1) -> Usage:
        """Count one call of `cost` unless the budget refuses it (then nothing is counted)."""
        with self._lock:
            now = self._now()
            used, _ = self._state(key, now)
            if self._blocked.get(key, 0.0) > now or used + cost > self.limit:
                if self.penalty and self._blocked.get(key, 0.0) <= now:
                    self._blocked[key] = now + self.penalty
                return self._usage(key, now, allowed=False)
            self._count(key, now, cost)
            return self._usage(key, now, allowed=True)

    def peek(self, key: Hashable = None) -> Usage:
        """The budget now, counting nothing (`allowed`: whether a call of cost 1 would be)."""
        with self._lock:
            now = self._now()
            used, _ = self._state(key, now)
            allowed = self._blocked.get(key, 0.0) <= now and used < self.limit
            return self._usage(key, now, allowed)

    def use(self, key: Hashable = None, amount: int = 1) -> None:
        """Count `amount` that others used (another app, a dashboard), allowed or not."""
        with self._lock:
            now = self._now()
            self._state(key, now)
            self._count(key, now, amount)

    def exhaust(self, key: Hashable = None) -> None:
        """Use what is left of the current window."""
        with self._lock:
            now = self._now()
            used, _ = self._state(key, now)
            if used < self.limit:
                self._count(key, now, self.limit - used)

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._windows.clear()
            self._blocked.clear()
