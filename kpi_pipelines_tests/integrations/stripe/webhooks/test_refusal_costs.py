"""An anonymous request costs the same, and logs the same, whatever its workspace holds: an
unknown workspace, one with one Stripe connection and one with 21 (most of them naming a
secret variable that is not set) are refused after the same work.

The work is counted as it happens, nothing replaced: calls of `hmac.new` (each HMAC) and of
`read_secret` through a profile hook in every thread, and the control role's SQL statements
through SQLAlchemy's own events. How long it takes is measured by
benchmarks/bench_webhook_refusals.py, never asserted here.
"""

from __future__ import annotations

import hmac
import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from kpi_pipelines.integrations.shared.secrets import read_secret
from kpi_pipelines.integrations.stripe.webhooks.app import (
    PROBLEM_LOG_INTERVAL_SECONDS,
    SECRETS_TTL_SECONDS,
    create_app,
)
from kpi_pipelines.integrations.stripe.webhooks.signature import HMACS_PER_REQUEST
from kpi_pipelines.warehouse.control import Workspace, add_workspace
from kpi_pipelines.warehouse.database import Warehouse
from kpi_pipelines_tests.integrations.stripe.webhooks.support import (
    Clock,
    event,
    inbox,
    signed,
    stripe_connection,
)

REQUESTS = 12
WORKSPACES = {"unknown": "ws-nobody", "1 connection": "ws-few", "21 connections": "ws-many"}
MISSING = 18  # ws-many's connections whose secret variable is not set


@pytest.fixture
def holdings(warehouse, monkeypatch) -> None:
    """ws-few: one connection; ws-many: 21, three with a secret of their own (the
    variables are set) and 18 naming variables nobody set."""
    for ws in ("ws-few", "ws-many"):
        add_workspace(warehouse, Workspace(id=ws, name=ws))
    monkeypatch.setenv("WS_WS_FEW__STRIPE_WHSEC", "whsec_few")
    stripe_connection(warehouse, "ws-few", "WS_WS_FEW__STRIPE_WHSEC", None)
    for n in range(21):
        variable = f"WS_WS_MANY__WHSEC_{n}"
        if n < 21 - MISSING:
            monkeypatch.setenv(variable, f"whsec_many_{n}")
        stripe_connection(warehouse, "ws-many", variable, None, name=f"shop-{n}")


class Work:
    """Counts calls of the given functions in every thread while it is entered (a profile
    hook sees them run, unchanged), and the SQL statements `engine` executes."""

    def __init__(self, engine: sa.Engine, **functions: Callable) -> None:
        self.engine = engine
        self.names = {function.__code__: name for name, function in functions.items()}
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _profile(self, frame, event_name: str, _arg) -> None:
        if event_name == "call" and frame.f_code in self.names:
            with self._lock:
                self.counts[self.names[frame.f_code]] += 1

    def _statement(self, *_args) -> None:
        with self._lock:
            self.counts["sql statements"] += 1

    @contextmanager
    def counting(self) -> Iterator[Counter[str]]:
        self.counts = Counter()
        sa.event.listen(self.engine, "before_cursor_execute", self._statement)
        threading.setprofile(self._profile)  # the threads a TestClient request starts
        sys.setprofile(self._profile)
        try:
            yield self.counts
        finally:
            sys.setprofile(None)
            threading.setprofile(None)  # type: ignore[arg-type]
            sa.event.remove(self.engine, "before_cursor_execute", self._statement)


def badly_signed() -> tuple[bytes, dict[str, str]]:
    """What anyone can send: a well-formed, current header whose signature is no one's."""
    body, _ = signed(event("evt_anonymous"), "whsec_a_guess")
    return body, {"Stripe-Signature": f"t={int(time.time())},v1={'0' * 64}"}


def work_of(
    client: TestClient, work: Work, path: str, body: bytes, headers: dict[str, str]
) -> Counter[str]:
    with work.counting() as counts:
        for _ in range(REQUESTS):
            assert client.post(path, content=body, headers=headers).status_code == 400
    return Counter(counts)


def test_refusing_a_request_takes_the_same_work_whatever_the_workspace_holds(
    warehouse: Warehouse, holdings
) -> None:
    client = TestClient(create_app(warehouse, clock=Clock()))
    work = Work(warehouse.engine("kpi_control"), hmacs=hmac.new, secret_reads=read_secret)
    unsigned = {
        case: work_of(client, work, f"/stripe/{ws}", b'{"id": "evt_1"}', {})
        for case, ws in WORKSPACES.items()
    }
    # No well-formed, current signature header: nothing is looked up, nothing computed.
    assert unsigned == {case: Counter() for case in WORKSPACES}

    first = {
        case: work_of(client, work, f"/stripe/{ws}", *badly_signed())
        for case, ws in WORKSPACES.items()
    }
    again = {
        case: work_of(client, work, f"/stripe/{ws}", *badly_signed())
        for case, ws in WORKSPACES.items()
    }
    # Every checked body costs the same HMACs; an endpoint's connections are looked up
    # once (one statement) and their secrets read once, then not again for a while.
    for case in WORKSPACES:
        assert first[case]["hmacs"] == REQUESTS * HMACS_PER_REQUEST, case
        assert first[case]["sql statements"] == 1, case
        assert again[case] == Counter(hmacs=REQUESTS * HMACS_PER_REQUEST), case
    assert first["21 connections"]["secret_reads"] == 21
    assert first["1 connection"]["secret_reads"] == 1
    assert inbox(warehouse) == []


def test_a_missing_secret_is_logged_once_per_connection_and_interval(
    warehouse: Warehouse, holdings, caplog
) -> None:
    clock = Clock()
    client = TestClient(create_app(warehouse, clock=clock))

    def errors_after_requests() -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="kpi_pipelines.webhooks"):
            for _ in range(REQUESTS):
                body, headers = badly_signed()
                assert (
                    client.post("/stripe/ws-many", content=body, headers=headers).status_code == 400
                )
                clock.advance(SECRETS_TTL_SECONDS)  # the secrets are read again each time
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]

    first = errors_after_requests()
    assert len(first) == MISSING
    for n in range(21 - MISSING, 21):
        [line] = [m for m in first if f"WS_WS_MANY__WHSEC_{n} " in m]
        assert "is not set" in line
    assert errors_after_requests() == []  # the interval has not passed yet
    clock.advance(PROBLEM_LOG_INTERVAL_SECONDS)
    assert len(errors_after_requests()) == MISSING
