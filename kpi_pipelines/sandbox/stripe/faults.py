"""Stripe's fault script: the kit's injector with Stripe's verbs, plus objects served malformed
(as an API regression would serve them).

Request faults apply to authenticated `/v1` requests, in the order they arrive; the counted
ones (`storm`, `slow_next`, `truncate`, `not_json`, `bomb`, each after `after` normal requests)
queue up in the order they are scripted. What a fault answers is Stripe's (errors.py).
`rewind` makes lists go round in circles (a paging bug, or a hostile provider).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kpi_pipelines.sandbox.kit import FaultInjector

API = "v1"


class Faults(FaultInjector):
    """The sandbox's fault script. All verbs return self so they chain."""

    def clear(self) -> Faults:
        """Remove every scripted fault and malformation (the sandbox serves normally again)."""
        super().clear()
        with self._lock:
            self._malformed: dict[str, tuple[dict[str, Any], frozenset[str]]] = {}
            self._rewinds: dict[str, list[Any]] = {}
        return self

    def storm(  # type: ignore[override]
        self, count: int, status: int = 429, should_retry: bool | None = True, after: int = 0
    ) -> Faults:
        """Answer `count` requests with `status` (429: Stripe's rate-limit error), after serving
        the next `after` normally. `should_retry`: the Stripe-Should-Retry header (None: absent,
        as on most of Stripe's 429s)."""
        super().storm(count, status, retry=should_retry, after=after)
        return self

    def fail_every(  # type: ignore[override]
        self, n: int, status: int = 500, should_retry: bool | None = None
    ) -> Faults:
        """Answer every n-th request (n, 2n, ...) with `status`; n=0 turns it off."""
        super().fail_every(n, status, retry=should_retry)
        return self

    def down(self, status: int = 503) -> Faults:  # type: ignore[override]
        """Answer every request with `status` (500 or 503) until `up()`; a 503 says retry."""
        super().down(status, retry=True if status == 503 else None)
        return self

    def not_json(self, count: int, after: int = 0) -> Faults:
        """Answer `count` requests with HTTP 200 and an HTML page (something in front of the
        API answering), after serving the next `after` normally."""
        self.malformed(count, after)
        return self

    def revoke_key(self, after: int = 0) -> Faults:
        """The account's key stops working after `after` more requests (rolled or revoked in
        the Dashboard): every later request gets Stripe's 401, until `clear()`."""
        self.revoke(after)
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

    def rewind(self, after_id: str, to_id: str | None = None, times: int = 1) -> Faults:
        """Answer the next `times` list requests `starting_after=after_id` as if they asked
        for `starting_after=to_id` (None: the list's first page): a list that goes round in
        circles."""
        with self._lock:
            self._rewinds[after_id] = [to_id, times]
        return self

    def rewound(self, query: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """`query` (a request's parameters) as a scripted `rewind` changes it."""
        with self._lock:
            if not self._rewinds:
                return query
            after = dict(query).get("starting_after")
            rewind = self._rewinds.get(after) if after is not None else None
            if rewind is None:
                return query
            rewind[1] -= 1
            if rewind[1] <= 0:
                del self._rewinds[after]
            self.injected += 1
        kept = [(name, value) for name, value in query if name != "starting_after"]
        return kept + ([("starting_after", rewind[0])] if rewind[0] is not None else [])

    @property
    def malformed_objects(self) -> bool:
        return bool(self._malformed)

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
        if "bomb" in spec:
            bomb = spec["bomb"]
            self.bomb(int(bomb["count"]), int(bomb["size"]), int(bomb.get("after", 0)))
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
