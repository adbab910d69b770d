"""Helpers of the billing-settings tests: a scripted account served over HTTP, read back."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from kpi_pipelines.sandbox.stripe.scenarios import (
    CustomerScript,
    PriceSpec,
    ScriptedSandbox,
    SubscriptionScript,
)
from kpi_pipelines_tests.sandbox.stripe.conftest import Served, serve

START = datetime(2026, 1, 1, tzinfo=UTC)  # day 0; monthly renewals on the 1st
DAY = 86_400
HOUR = 3_600


def ts(days: float) -> int:
    """Unix seconds of `days` after the start."""
    return int((START + timedelta(days=days)).timestamp())


def monthly(dollars: float) -> PriceSpec:
    return PriceSpec(unit_amount=round(dollars * 100))


@contextmanager
def account(*subs: SubscriptionScript, now_days: float = 120, **customer: Any) -> Iterator[Served]:
    """One customer with `subs`, served with its clock `now_days` after the start."""
    sandbox = ScriptedSandbox(
        [CustomerScript(subscriptions=subs, **customer)],
        start=START,
        now=START + timedelta(days=now_days),
    )
    yield from serve(sandbox)


def mrr(served: Served, days: float) -> float:
    """The truth's MRR of the (only) customer at `days` after the start, in major units."""
    values = served.sandbox.truth.mrr_at(ts(days))
    return round(sum(v for _, v in values.values()) / 100, 2)


def events(served: Served, *types: str) -> list[dict[str, Any]]:
    """The account's events of these types, oldest first."""
    params = [("types[]", t) for t in types]
    return list(reversed(served.all("/v1/events", params)))


def invoices(served: Served) -> list[dict[str, Any]]:
    """The account's invoices, oldest first."""
    return list(reversed(served.all("/v1/invoices")))


def subscription(served: Served) -> dict[str, Any]:
    [sub] = served.all("/v1/subscriptions", {"status": "all"})
    return sub
