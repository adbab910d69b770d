"""Scriptable faults for the Stripe sandbox: rate-limit storms, 5xx, outages, slowness, bad bodies,
a key revoked mid-sync, and objects served malformed (as an API regression would serve them).

Request faults apply to authenticated `/v1` requests, in the order they arrive; the counted
ones (`storm`, `slow_next`, `truncate`, `not_json`, each after `after` normal requests) queue
up in the order they are scripted. Thread-safe:
tests script them from their own thread while the server runs in another.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# What a proxy or load balancer in front of an API sends when it, not the API, answers:
# HTTP 200, but an HTML page instead of JSON.
NOT_JSON_BODY = (
    b"<!DOCTYPE html><html><head><title>Service maintenance</title></head>"
    b"<body><h1>We'll be back shortly.</h1></body></html>"
)


@dataclass(frozen=True)
class Fault:
    """What to do with one request instead of (or besides) serving it."""

    status: int  # 200: serve the request (late, cut short or replaced, see below)
    should_retry: bool | None = None  # Stripe-Should-Retry header (None: not sent)
    truncate: bool = False  # serve the real body, cut in half (malformed JSON)
    delay: float = 0.0  # answer this request that many seconds late
    body: bytes | None = None  # answer 200 with this body instead of the real one


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
            self._revoked_after: int | None = None  # requests served before the key stops working
            self._malformed: dict[str, tuple[dict[str, Any], frozenset[str]]] = {}
            self.requests = 0  # authenticated /v1 requests seen
            self.injected = 0  # requests answered with a fault
        return self

    def _queue(self, faults: list[Fault], after: int) -> None:
        with self._lock:
            self._storm.extend([None] * after + faults)

    def storm(
        self, count: int, status: int = 429, should_retry: bool | None = True, after: int = 0
    ) -> Faults:
        """Answer `count` requests with `status` (429: Stripe's rate-limit error), after serving
        the next `after` normally. `should_retry`: the Stripe-Should-Retry header (None: absent,
        as on most of Stripe's 429s)."""
        self._queue([Fault(status, should_retry)] * count, after)
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

    def slow_next(self, count: int, seconds: float, after: int = 0) -> Faults:
        """Answer `count` requests `seconds` late (then normally), after the next `after`."""
        self._queue([Fault(200, delay=seconds)] * count, after)
        return self

    def truncate(self, count: int, after: int = 0) -> Faults:
        """Serve `count` bodies cut short (status 200, malformed JSON), after serving the next
        `after` requests normally."""
        self._queue([Fault(200, None, truncate=True)] * count, after)
        return self

    def not_json(self, count: int, after: int = 0, body: bytes = NOT_JSON_BODY) -> Faults:
        """Answer `count` requests with HTTP 200 and a body that is not JSON (an HTML page from
        something in front of the API), after serving the next `after` normally."""
        self._queue([Fault(200, body=body)] * count, after)
        return self

    def revoke_key(self, after: int = 0) -> Faults:
        """The account's key stops working after `after` more requests (rolled or revoked in
        the Dashboard): every later request gets Stripe's 401, until `clear()`."""
        with self._lock:
            self._revoked_after = self.requests + after
        return self

    def malform(
        self,
        object_id: str,
        set_fields: Mapping[str, Any] | None = None,
        drop: Iterable[str] = (),
    ) -> Faults:
        """Serve object `object_id` wherever it appears (lists, retrieval, embedded in other
        objects and in events) with `set_fields` replaced and `drop` removed: what a Stripe
        API regression would serve. The sandbox's truth is unchanged."""
        with self._lock:
            self._malformed[object_id] = (dict(set_fields or {}), frozenset(drop))
        return self

    @property
    def delay(self) -> float:
        return self._slow

    @property
    def malformed(self) -> bool:
        return bool(self._malformed)

    def next(self) -> Fault | None:
        """Count one request and return the fault to inject, if any."""
        with self._lock:
            self.requests += 1
            fault: Fault | None = None
            if self._revoked_after is not None and self.requests > self._revoked_after:
                fault = Fault(401)
            elif self._down is not None:
                fault = self._down
            elif self._storm:
                fault = self._storm.pop(0)
            elif self._every and self.requests % self._every == 0:
                fault = self._every_fault
            if fault is not None:
                self.injected += 1
            return fault

    def apply_malformations(self, body: Any) -> Any:
        """`body` with every malformed object replaced (walks nested objects and lists)."""
        with self._lock:
            patches = dict(self._malformed)
        return _patched(body, patches) if patches else body

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
        if "slow_next" in spec:
            self.slow_next(**spec["slow_next"])
        if "truncate" in spec:
            truncate = spec["truncate"]
            if isinstance(truncate, dict):
                self.truncate(int(truncate["count"]), int(truncate.get("after", 0)))
            else:
                self.truncate(int(truncate))
        if "not_json" in spec:
            self.not_json(int(spec["not_json"]["count"]), int(spec["not_json"].get("after", 0)))
        if "revoke_key" in spec:
            self.revoke_key(int(spec["revoke_key"].get("after", 0)))
        if "malform" in spec:
            m = spec["malform"]
            self.malform(m["id"], m.get("set"), m.get("drop", ()))
        return self


def _patched(value: Any, patches: dict[str, tuple[dict[str, Any], frozenset[str]]]) -> Any:
    if isinstance(value, list):
        return [_patched(v, patches) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _patched(v, patches) for k, v in value.items()}
    patch = patches.get(out.get("id")) if isinstance(out.get("id"), str) else None
    if patch is not None:
        set_fields, drop = patch
        out = {k: v for k, v in out.items() if k not in drop}
        out.update(set_fields)
    return out
