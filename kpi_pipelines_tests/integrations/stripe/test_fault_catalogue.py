"""Stripe's fault catalogue, each case scripted in the sandbox and run through the pipeline.

A case the retry budget absorbs ends with raw_records and kpi_data equal, row for row, to a
calm run of the same sandbox (a workspace that went through the same syncs without faults).
A case that must fail ends with a clear, secret-free error, kpi_data unchanged, nothing landed
that the calm run did not land (only whole batches), and the next calm run completes the
workspace to the calm state.

Each case runs on a full read ("full") or on an incremental sync of a workspace synced ten
simulated days earlier ("incremental"); faults start after `AFTER` normal requests, mid-sync.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kpi_pipelines.sandbox.stripe import Faults, StripeSandbox
from kpi_pipelines_tests.integrations.stripe.landing import (
    assert_same_landing,
    landing,
    written_rows,
)
from kpi_pipelines_tests.integrations.stripe.world import StripeWorld, serve_world
from kpi_pipelines_tests.run_results import failure_message

AFTER = 10  # requests served normally before a case's faults start
RETRIES = 4
# Small pages (many requests), small batches (a failed run may have landed whole ones), tiny
# waits, a short timeout.
ADAPTER = {
    "page_size": 20,
    "batch_size": 150,
    "max_network_retries": RETRIES,
    "retry_backoff_seconds": 0.002,
    "retry_backoff_max_seconds": 0.02,
    "retry_budget_seconds": 5.0,
    "timeout_seconds": 0.4,
}
UNAVAILABLE = rf"stripe is unavailable after {RETRIES + 1} attempts over \d+\.\d s: last error "
RETRIED_LATER = r"\. The sync will be retried later\.$"


@dataclass(frozen=True)
class Case:
    name: str
    mode: str  # "full" or "incremental"
    script: Callable[[Faults], Any]
    fails: str | None = None  # a regex the failure message matches; None: the run succeeds
    adapter: dict[str, Any] = field(default_factory=dict)


CASES = [
    # absorbed by retries
    Case("429 storm, Stripe-Should-Retry true", "full", lambda f: f.storm(3, 429, True, AFTER)),
    Case(
        "429 storm, no Stripe-Should-Retry", "incremental", lambda f: f.storm(4, 429, None, AFTER)
    ),
    Case("429 storm, Stripe-Should-Retry false", "full", lambda f: f.storm(2, 429, False, AFTER)),
    Case(
        "5xx burst",
        "incremental",
        lambda f: f.storm(1, 500, None, AFTER).storm(1, 502, None).storm(2, 503, True),
    ),
    Case("answers slower than the timeout", "full", lambda f: f.slow_next(2, 1.0, AFTER)),
    Case("bodies cut short", "incremental", lambda f: f.truncate(2, AFTER)),
    Case("200s that are not JSON", "full", lambda f: f.not_json(3, AFTER)),
    # past the budget, or not to be retried
    Case(
        "429 storm longer than the retries",
        "incremental",
        lambda f: f.storm(50, 429, None, AFTER),
        UNAVAILABLE + r"HTTP 429 rate_limit: Too many requests hit the API too quickly\.",
    ),
    Case(
        "provider down past the retries",
        "full",
        lambda f: f.storm(50, 503, True, AFTER),
        UNAVAILABLE + r"HTTP 503: The Stripe API is temporarily unavailable",
    ),
    Case(
        "5xx with Stripe-Should-Retry false",
        "incremental",
        lambda f: f.storm(1, 500, False, AFTER),
        r"^stripe is unavailable: last error HTTP 500: An unknown error occurred.*"
        r"\(Stripe-Should-Retry: false, so not retried\)",
    ),
    Case(
        "answers slower than the timeout, past the retries",
        "full",
        lambda f: f.slow_next(20, 1.0, AFTER),
        UNAVAILABLE + r"/v1/[\w/]+: Unexpected error communicating with Stripe",
    ),
    Case(
        "bodies cut short past the retries",
        "incremental",
        lambda f: f.truncate(20, AFTER),
        UNAVAILABLE + r"/v1/[\w/]+ sent a body we cannot read: Input data was truncated",
    ),
    Case(
        "key revoked mid-sync",
        "full",
        lambda f: f.revoke_key(after=AFTER),
        r"^stripe rejected the credentials \(HTTP 401\): Expired API Key provided: sk_test_\*+0000\."
        r" Reconnect this workspace to stripe",
    ),
    Case(
        "key revoked mid incremental sync",
        "incremental",
        lambda f: f.revoke_key(after=AFTER),
        r"^stripe rejected the credentials \(HTTP 401\)",
    ),
]


@pytest.fixture
def world(warehouse, monkeypatch) -> Iterator[StripeWorld]:
    # A young business (four months) keeps the metric series, computed up to today, short.
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    sandbox = StripeSandbox(
        seed=3,
        customers=25,
        start=today - timedelta(days=140),
        now=today - timedelta(days=20),
        acquisition_days=100,
    )
    with serve_world(sandbox, warehouse, monkeypatch) as world:
        world.workspace("faulty")
        world.workspace("calm")
        world.import_rates("USD")
        yield world


def sync(world: StripeWorld, workspace_id: str, **adapter: Any):
    return world.sync(workspace_id, **{**ADAPTER, **adapter})


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fault_catalogue(world: StripeWorld, case: Case) -> None:
    sandbox = world.sandbox
    if case.mode == "incremental":
        assert sync(world, "faulty").success and sync(world, "calm").success
        sandbox.advance(timedelta(days=10))
    assert sync(world, "calm").success
    before = written_rows(world.warehouse, "faulty")
    sandbox.faults.clear()
    case.script(sandbox.faults)
    result = sync(world, "faulty", **case.adapter)
    if case.fails is None:
        assert result.success, failure_message(result)
        assert sandbox.faults.injected > 0
        assert_same_landing(world.warehouse, "faulty", "calm")
        return
    assert not result.success
    message = failure_message(result)
    assert re.search(case.fails, message), message
    assert re.search(RETRIED_LATER, message) or "Reconnect" in message, message
    assert sandbox.api_key not in message
    after = written_rows(world.warehouse, "faulty")
    assert after["kpi_data"] == before["kpi_data"] and after["audit_log"] == before["audit_log"]
    # whatever landed is what a calm run lands: whole batches of good records, no half batch
    calm, faulty = landing(world.warehouse, "calm").raw, landing(world.warehouse, "faulty").raw
    old = {(r[2], r[3]): r for r in before["raw_records"]}
    for row in after["raw_records"]:
        if old.get((row[2], row[3])) != row:
            assert faulty[(row[2], row[3])] == calm[(row[2], row[3])], row[:4]
    sandbox.faults.clear()
    rerun = sync(world, "faulty")
    assert rerun.success, failure_message(rerun)
    assert_same_landing(world.warehouse, "faulty", "calm")


def test_a_storm_past_the_time_budget_reports_the_attempts_it_made(world: StripeWorld) -> None:
    """The error states the true number of attempts (as many as the sandbox answered) and the
    time spent, when the time budget, not the attempt limit, ends the retries."""
    world.sandbox.faults.storm(1000, 429, None)
    result = sync(
        world,
        "faulty",
        max_network_retries=100,
        retry_backoff_seconds=0.05,
        retry_backoff_max_seconds=0.1,
        retry_budget_seconds=0.6,
    )
    assert not result.success
    message = failure_message(result)
    attempts = world.sandbox.faults.injected
    assert 3 <= attempts < 100
    found = re.search(r"after (\d+) attempts over (\d+\.\d) s", message)
    assert found, message
    assert int(found.group(1)) == attempts
    assert 0.3 <= float(found.group(2)) <= 2.0
    assert written_rows(world.warehouse, "faulty") == {
        "raw_records": [],
        "kpi_data": [],
        "audit_log": [],
    }
