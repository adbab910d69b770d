"""One fault injector for every simulator: scripted failures by request count, per API.

A simulator asks `next(api)` once per request (or lets `serve()` do it); the injector counts
the request and says which fault, if any, strikes it. Three layers, first match wins:
- standing faults: a revoked key (`revoke`), an outage (`down` until `up`), every n-th request
  failing (`fail_every`), and a delay added to every answer (`slow`);
- scripted faults, in the order scripted (`add`, or the verbs `storm`, `quota`, `slow_next`,
  `truncate`, `cut`, `malformed`, `bomb`): the first pending fault for the request's API decides; one
  still waiting out its `after` lets the request pass, so a fault can strike mid-sync;
- actions due at a request count (`at_request`): a token that expires or a grant revoked
  after N requests, run before the request is answered.
Thread-safe: tests script faults from their own thread while the server runs in another.
How a fault is answered (the provider's own bodies) is the simulator's `ErrorStyle`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Literal

from starlette.responses import Response

from kpi_pipelines.sandbox.kit.errors import ErrorStyle
from kpi_pipelines.sandbox.kit.replies import cut_short, gzip_bomb, truncated

FaultKind = Literal["status", "quota", "delay", "truncate", "cut", "malformed", "revoked", "bomb"]
KINDS: tuple[str, ...] = FaultKind.__args__  # type: ignore[attr-defined]


@dataclass
class Fault:
    """One scripted failure for `times` requests to `api` (None: any API), once the first
    `after` of them have been served normally.

    - status: answer `status` with the provider's error body (`message` or its default);
    - quota: the provider's own rate-limit or quota answer (its 429, its headers);
    - delay: wait `delay` seconds, then answer normally (client timeouts);
    - truncate: answer with the real body cut to half its bytes, framed as a whole response;
    - cut: send the real headers (the whole Content-Length) and half the body, then drop the
      connection (a body cut short in transit);
    - malformed: a body that is not JSON (the page of a proxy in front of the API);
    - revoked: what a revoked key or token gets;
    - bomb: a 200 whose gzip body inflates to `size` bytes (a hostile or broken provider).
    `retry`: the provider's "should retry" signal where it has one (None: not sent).
    """

    kind: FaultKind
    api: str | None = None
    times: int = 1
    status: int = 503
    message: str | None = None
    delay: float = 0.0
    after: int = 0
    retry: bool | None = None
    size: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {', '.join(KINDS)}")
        if self.times < 1:
            raise ValueError("a fault must apply at least once")
        if self.after < 0:
            raise ValueError("after counts requests served first: 0 or more")


class FaultInjector:
    """The fault script of one simulator. The verbs return self so they chain."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> FaultInjector:
        """Remove every fault and pending action (the simulator serves normally again)."""
        with self._lock:
            self._scripted: list[Fault] = []
            self._actions: list[tuple[int, Collection[str] | None, Callable[[], object]]] = []
            self._every = 0
            self._every_fault: Fault | None = None
            self._down: Fault | None = None
            self._revoked_after: int | None = None
            self._slow = 0.0
            self.requests = 0  # requests seen
            self.injected = 0  # requests answered with a fault
            self._seen: dict[str, int] = {}  # requests seen per API (for actions)
        return self

    # -- scripted faults ----------------------------------------------------------------------
    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._scripted.append(fault)
        return fault

    @property
    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._scripted)

    def storm(
        self,
        count: int,
        status: int = 429,
        *,
        retry: bool | None = None,
        after: int = 0,
        api: str | None = None,
    ) -> FaultInjector:
        """Answer `count` requests with `status` (the provider's error body for it)."""
        self.add(Fault("status", api, times=count, status=status, retry=retry, after=after))
        return self

    def quota(self, count: int, *, after: int = 0, api: str | None = None) -> FaultInjector:
        """Answer `count` requests with the provider's own rate-limit answer."""
        self.add(Fault("quota", api, times=count, after=after))
        return self

    def slow_next(
        self, count: int, seconds: float, after: int = 0, *, api: str | None = None
    ) -> FaultInjector:
        """Answer `count` requests `seconds` late (then normally)."""
        self.add(Fault("delay", api, times=count, delay=seconds, after=after))
        return self

    def truncate(self, count: int, after: int = 0, *, api: str | None = None) -> FaultInjector:
        """Serve `count` bodies cut to half (the status as it was, the body not valid JSON)."""
        self.add(Fault("truncate", api, times=count, after=after))
        return self

    def cut(self, count: int, after: int = 0, *, api: str | None = None) -> FaultInjector:
        """Drop the connection half-way through `count` bodies."""
        self.add(Fault("cut", api, times=count, after=after))
        return self

    def malformed(self, count: int, after: int = 0, *, api: str | None = None) -> FaultInjector:
        """Answer `count` requests with a body that is not JSON."""
        self.add(Fault("malformed", api, times=count, after=after))
        return self

    def bomb(
        self, count: int, size: int, after: int = 0, *, api: str | None = None
    ) -> FaultInjector:
        """Answer `count` requests with a gzip body that inflates to `size` bytes."""
        self.add(Fault("bomb", api, times=count, after=after, size=size))
        return self

    # -- standing faults ----------------------------------------------------------------------
    def fail_every(self, n: int, status: int = 500, *, retry: bool | None = None) -> FaultInjector:
        """Answer every n-th request (n, 2n, ...) with `status`; n=0 turns it off."""
        with self._lock:
            self._every = n
            self._every_fault = Fault("status", status=status, retry=retry) if n else None
        return self

    def down(self, status: int = 503, *, retry: bool | None = None) -> FaultInjector:
        """Answer every request with `status` until `up()`."""
        with self._lock:
            self._down = Fault("status", status=status, retry=retry)
        return self

    def up(self) -> FaultInjector:
        with self._lock:
            self._down = None
        return self

    def slow(self, seconds: float) -> FaultInjector:
        """Delay every answer by `seconds` (0 turns it off); the server stays responsive."""
        with self._lock:
            self._slow = max(0.0, seconds)
        return self

    @property
    def delay(self) -> float:
        """The delay `slow()` adds to every answer."""
        return self._slow

    def revoke(self, after: int = 0) -> FaultInjector:
        """The key stops working after `after` more requests: every later one gets the
        provider's answer to a revoked key, until `clear()`."""
        with self._lock:
            self._revoked_after = self.requests + after
        return self

    # -- actions ------------------------------------------------------------------------------
    def at_request(
        self, after: int, action: Callable[[], object], *, apis: Collection[str] | None = None
    ) -> None:
        """Run `action` once `after` more requests to `apis` (None: any) have been seen,
        before the next one is answered (a token expiring or a grant revoked mid-sync)."""
        if after < 0:
            raise ValueError("after counts requests still answered: 0 or more")
        with self._lock:
            seen = self._count_of(apis)
            self._actions.append((seen + after, apis, action))

    def _count_of(self, apis: Collection[str] | None) -> int:
        if apis is None:
            return self.requests
        return sum(self._seen.get(api, 0) for api in apis)

    # -- per request --------------------------------------------------------------------------
    def next(self, api: str = "api") -> Fault | None:
        """Count one request to `api`; run the actions due; return the fault that strikes it."""
        with self._lock:
            due = self._due(api) if self._actions else ()
            self.requests += 1
            self._seen[api] = self._seen.get(api, 0) + 1
            fault = self._choose(api)
            if fault is not None:
                self.injected += 1
        for action in due:
            action()
        return fault

    def _due(self, api: str) -> list[Callable[[], object]]:
        due, waiting = [], []
        for entry in self._actions:
            at, apis, action = entry
            if apis is not None and api not in apis:
                waiting.append(entry)
            elif self._count_of(apis) >= at:
                due.append(action)
            else:
                waiting.append(entry)
        self._actions = waiting
        return due

    def _choose(self, api: str) -> Fault | None:
        if self._revoked_after is not None and self.requests > self._revoked_after:
            return _REVOKED
        if self._down is not None:
            return self._down
        for fault in self._scripted:
            if fault.api in (None, api):
                if fault.after:
                    fault.after -= 1
                    return None
                fault.times -= 1
                if fault.times == 0:
                    self._scripted.remove(fault)
                return fault
        if self._every and self.requests % self._every == 0:
            return self._every_fault
        return None

    async def serve(
        self,
        api: str,
        style: ErrorStyle,
        handler: Callable[[], Awaitable[Response]],
    ) -> Response:
        """Answer one request: `handler()` unless a fault says otherwise, in `style`'s words."""
        fault = self.next(api)
        return await answer(fault, self._slow, style, handler)


_REVOKED = Fault("revoked")


async def answer(
    fault: Fault | None,
    delay: float,
    style: ErrorStyle,
    handler: Callable[[], Awaitable[Response]],
) -> Response:
    """The answer to a request that `fault` (or none) strikes, `delay` seconds late."""
    if fault is not None and fault.kind == "delay":
        delay += fault.delay
    if delay:
        await asyncio.sleep(delay)
    if fault is None or fault.kind == "delay":
        return await handler()
    if fault.kind == "status":
        return style.status(fault)
    if fault.kind == "quota":
        return style.quota(fault)
    if fault.kind == "revoked":
        return style.revoked(fault)
    if fault.kind == "malformed":
        return style.not_json_response()
    if fault.kind == "bomb":
        return gzip_bomb(fault.size)
    response = await handler()
    return cut_short(response) if fault.kind == "cut" else truncated(response)
