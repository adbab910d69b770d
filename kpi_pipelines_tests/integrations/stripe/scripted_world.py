"""Scripted Stripe accounts synced through the real pipeline (a fixture plugin: the root
conftest loads it): the `sync` fixture serves a scripted sandbox
(kpi_pipelines.sandbox.stripe.scenarios) over HTTP, syncs a USD workspace from it with the
official SDK, and returns the stored series; every sync is also checked against the
sandbox's own truth for every simulated day."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest

from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.sandbox.stripe import StripeSandbox, create_app, end_of_day
from kpi_pipelines.sandbox.stripe.scenarios import (
    CustomerScript,
    PriceSpec,
    ScriptedSandbox,
    SubscriptionScript,
)
from kpi_pipelines_tests.canary import scanned_instance
from kpi_pipelines_tests.integrations.stripe.world import StripeWorld, rate_lookup, stored_series
from kpi_pipelines_tests.run_results import failure_message

START = datetime(2026, 1, 1, tzinfo=UTC)  # day 0; monthly renewals on the 1st
NOW = START + timedelta(days=120)  # the sandbox clock: 2026-05-01
WORKSPACE = "examples"
MOVEMENTS = {
    "new": "new_mrr",
    "expansion": "expansion_mrr",
    "contraction": "contraction_mrr",
    "churn": "churned_mrr",
    "reactivation": "reactivation_mrr",
}


def money(value: float):
    return pytest.approx(value, abs=0.01)


def day(n: int) -> date:
    return (START + timedelta(days=n)).date()


def monthly(dollars: float) -> PriceSpec:
    return PriceSpec(unit_amount=round(dollars * 100))


def subscriber(*subscriptions: SubscriptionScript, **customer) -> CustomerScript:
    return CustomerScript(subscriptions=subscriptions, **customer)


@dataclass
class Synced:
    sandbox: StripeSandbox
    points: dict[str, dict[date, float]]
    world: StripeWorld

    def value(self, metric: str, n: int) -> float | None:
        """The stored value of `metric` on day n (None: no point)."""
        return self.points[metric].get(day(n))

    def money(self, metric: str, n: int) -> float:
        return self.points[metric].get(day(n), 0.0)

    def status(self, ci: int, n: int, sub: int = 0) -> str:
        """Customer ci's subscription status at the end of day n, as the sandbox served it."""
        return self.sandbox.sim(ci).subs[sub].status_at(end_of_day(day(n)))


Sync = Callable[..., Synced]


@pytest.fixture(scope="module")
def scripted_instance() -> Iterator[dg.DagsterInstance]:
    with scanned_instance() as instance:
        yield instance


@pytest.fixture
def sync(warehouse, scripted_instance, monkeypatch) -> Iterator[Sync]:
    """Serve a scripted sandbox, sync a USD workspace from it, return the stored series."""
    with ExitStack() as stack:

        def run(*customers: CustomerScript, now: datetime = NOW, truth: bool = True) -> Synced:
            sandbox = ScriptedSandbox(customers, start=START, now=now)
            server = stack.enter_context(LoopbackServer(create_app(sandbox)))
            monkeypatch.setenv("KPI_STRIPE_BASE_URL", server.base_url)
            world = StripeWorld(sandbox, server, warehouse, scripted_instance, monkeypatch)
            world.workspace(WORKSPACE, "USD", "UTC")
            world.import_rates("USD")
            result = world.sync(WORKSPACE)
            assert result.success, failure_message(result)
            synced = Synced(sandbox, stored_series(warehouse, WORKSPACE), world)
            if truth:
                agrees_with_the_truth(synced)
            return synced

        yield run


def agrees_with_the_truth(synced: Synced) -> None:
    """Stored MRR, customers and movements equal the sandbox's truth on every simulated day."""
    sandbox = synced.sandbox
    last = sandbox.now.date() - timedelta(days=1)
    days_match_truth(sandbox, synced.points, sandbox.start.date(), last, tolerance=0.01)


def days_match_truth(
    sandbox: StripeSandbox,
    points: Mapping[str, Mapping[date, float]],
    first: date,
    last: date,
    *,
    tolerance: float,
    currency: str = "USD",
) -> None:
    """Stored MRR, active customers and every movement (`points`: metric -> day -> value)
    equal the sandbox's truth on each day from `first` to `last`, in `currency`."""
    convert = rate_lookup(sandbox, currency)
    for truth in sandbox.truth.daily(first, last):
        d = truth.day
        mrr = sum(convert(v, cur, d) for cur, v in truth.totals().items())
        assert points["mrr"].get(d, 0.0) == pytest.approx(mrr, abs=tolerance), d
        assert points["active_customers"].get(d, 0) == len(truth.mrr), d
        moves: dict[str, float] = defaultdict(float)
        for m in truth.movements.values():
            moves[m.kind] += convert(m.amount, m.currency, d)
        for kind, metric in MOVEMENTS.items():
            assert points[metric].get(d, 0.0) == pytest.approx(moves[kind], abs=tolerance), (
                d,
                metric,
            )


def every_day(synced: Synced, metric: str, first: int, last: int) -> set[float]:
    return {round(synced.money(metric, n), 6) for n in range(first, last + 1)}
