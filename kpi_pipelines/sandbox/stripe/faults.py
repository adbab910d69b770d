"""Scriptable faults for the Stripe sandbox: rate-limit storms, 5xx, outages, slowness, bad bodies.

Faults apply to authenticated `/v1` requests, in the order they arrive. Thread-safe: tests script
them from their own thread while the server runs in another.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    """What to do with one request instead of serving it."""

    status: int
    should_retry: bool | None = None  # Stripe-Should-Retry header (None: not sent)
    truncate: bool = False  # serve the real body, cut in half (malformed JSON)


class Faults:
    """The sandbox's fault script. All methods return self so they chain."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> Faults:
        """Remove every scripted fault (the sandbox serves normally again)."""
        with getattr(self, "_lock", threading.Lock()):
            self._storm: list[Fault | None] = []  # None: serve that request normally
            self._every = 0
            self._every_fault: Fault | None = None
            self._down: Fault | None = None
            self._slow = 0.0
            self.requests = 0  # authenticated /v1 requests seen
            self.injected = 0  # requests answered with a fault
        return self

    def storm(self, count: int, status: int = 429, should_retry: bool = True) -> Faults:
        """Answer the next `count` requests with `status` (429: Stripe's rate-limit error)."""
        with self._lock:
            self._storm.extend([Fault(status, should_retry)] * count)
        return self

    def fail_every(self, n: int, status: int = 500, should_retry: bool | None = None) -> Faults:
        """Answer every n-th request (n, 2n, ...) with `status`; n=0 turns it off."""
        with self._lock:
            self._every = n
            self._every_fault = Fault(status, should_retry) if n else None
        return self

    def down(self, status: int = 503) -> Faults:
        """Answer every request with `status` (500 or 503) until `up()`."""
        with self._lock:
            self._down = Fault(status, True if status == 503 else None)
        return self

    def up(self) -> Faults:
        with self._lock:
            self._down = None
        return self

    def slow(self, seconds: float) -> Faults:
        """Delay every response by `seconds` (0 turns it off); the server stays responsive."""
        with self._lock:
            self._slow = max(0.0, seconds)
        return self

    def truncate(self, count: int, after: int = 0) -> Faults:
        """Serve `count` bodies cut short (status 200, malformed JSON), after serving the next
        `after` requests normally."""
        with self._lock:
            self._storm.extend([None] * after + [Fault(200, None, truncate=True)] * count)
        return self

    @property
    def delay(self) -> float:
        return self._slow

    def next(self) -> Fault | None:
        """Count one request and return the fault to inject, if any."""
        with self._lock:
            self.requests += 1
            fault: Fault | None = None
            if self._down is not None:
                fault = self._down
            elif self._storm:
                fault = self._storm.pop(0)
            elif self._every and self.requests % self._every == 0:
                fault = self._every_fault
            if fault is not None:
                self.injected += 1
            return fault

    def configure(self, spec: dict) -> Faults:
        """Apply a JSON fault script, e.g. {"storm": {"count": 3}, "slow": 0.1} (control API)."""
        if spec.get("clear"):
            self.clear()
        if "storm" in spec:
            self.storm(**spec["storm"])
        if "fail_every" in spec:
            self.fail_every(**spec["fail_every"])
        if "down" in spec:
            if spec["down"] is False:
                self.up()
            else:
                self.down(**(spec["down"] if isinstance(spec["down"], dict) else {}))
        if "slow" in spec:
            self.slow(float(spec["slow"]))
        if "truncate" in spec:
            truncate = spec["truncate"]
            if isinstance(truncate, dict):
                self.truncate(int(truncate["count"]), int(truncate.get("after", 0)))
            else:
                self.truncate(int(truncate))
        return self
