"""A Stripe sandbox served on loopback, and helpers to sync a workspace from it (a fixture
plugin: the root conftest loads it for every test folder that needs Stripe)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import pytest

from kpi_pipelines.automation.partitions import register_partition
from kpi_pipelines.definitions import RESOURCES
from kpi_pipelines.demo import materialize_provider
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.sandbox.stripe import StripeSandbox, create_app
from kpi_pipelines.warehouse.control import (
    Connection,
    FxRate,
    Workspace,
    add_connection,
    add_workspace,
    import_fx_rates,
    secret_namespace,
)
from kpi_pipelines.warehouse.database import Warehouse
from kpi_pipelines.warehouse.tenant_data import read_points
from kpi_pipelines_tests.canary import scanned_instance


def stripe_key_variable(workspace_id: str) -> str:
    """The variable a test workspace's Stripe connection names for its key."""
    return f"{secret_namespace(workspace_id)}STRIPE_KEY"


@dataclass
class StripeWorld:
    sandbox: StripeSandbox
    server: LoopbackServer
    warehouse: Warehouse
    instance: dg.DagsterInstance
    monkeypatch: pytest.MonkeyPatch

    def workspace(self, workspace_id: str, currency: str = "USD", tz: str = "UTC") -> Workspace:
        workspace = add_workspace(
            self.warehouse,
            Workspace(id=workspace_id, name=workspace_id, reporting_currency=currency, timezone=tz),
        )
        self.monkeypatch.setenv(stripe_key_variable(workspace_id), self.sandbox.api_key)
        add_connection(
            self.warehouse,
            Connection(
                workspace_id=workspace_id,
                provider="stripe",
                secret_env={"api_key": stripe_key_variable(workspace_id)},
            ),
        )
        register_partition(self.instance, workspace_id, "stripe")
        return workspace

    def import_rates(self, quote: str) -> None:
        start = self.sandbox.start.date() - timedelta(days=40)
        end = max(self.sandbox.now.date(), date.today()) + timedelta(days=40)
        rates = [
            FxRate(base=base.upper(), quote=q.upper(), day=day, rate=rate)
            for day, base, q, rate in self.sandbox.truth.fx_rates(start, end)
            if q.upper() == quote and base.upper() != quote
        ]
        import_fx_rates(self.warehouse, rates)

    def sync(
        self, workspace_id: str, *, options: dict[str, Any] | None = None, **adapter_config
    ) -> dg.ExecuteInProcessResult:
        """Run the real asset for one workspace; `options` is its run config (what the
        launchpad or a schedule sets), `adapter_config` the Stripe resource's settings."""
        adapter = type(RESOURCES["stripe"])(**adapter_config) if adapter_config else None
        return materialize_provider(
            self.warehouse, self.instance, "stripe", workspace_id, options, adapter=adapter
        )


def stored_series(warehouse: Warehouse, workspace_id: str) -> dict[str, dict[date, float]]:
    """The workspace's stored Stripe points: metric -> day -> value."""
    out: dict[str, dict[date, float]] = defaultdict(dict)
    for p in read_points(warehouse, workspace_id, source="stripe"):
        out[p.metric][p.timestamp.date()] = p.value
    return out


def rate_lookup(sandbox: StripeSandbox, quote: str):
    start = sandbox.start.date() - timedelta(days=40)
    end = max(sandbox.now.date(), date.today()) + timedelta(days=40)
    table = {
        (day, base.upper()): rate
        for day, base, q, rate in sandbox.truth.fx_rates(start, end)
        if q.upper() == quote
    }

    def convert(amount_minor: float, currency: str, day: date) -> float:
        currency = currency.upper()
        minor = 1 if currency == "JPY" else 100
        rate = 1.0 if currency == quote else table[(day, currency)]
        return amount_minor / minor * rate

    return convert


@contextmanager
def serve_world(
    sandbox: StripeSandbox, warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> Iterator[StripeWorld]:
    """`sandbox` served on loopback, the Stripe base address pointed at it."""
    with LoopbackServer(create_app(sandbox)) as server, scanned_instance() as instance:
        monkeypatch.setenv("KPI_STRIPE_BASE_URL", server.base_url)
        yield StripeWorld(sandbox, server, warehouse, instance, monkeypatch)


@pytest.fixture
def stripe_world(warehouse, monkeypatch) -> Iterator[StripeWorld]:
    with serve_world(StripeSandbox(seed=11, customers=80), warehouse, monkeypatch) as world:
        yield world


@pytest.fixture
def young_stripe_world(warehouse, monkeypatch) -> Iterator[StripeWorld]:
    """A five-month-old business: every sync computes a short metric history (to today),
    for tests that sync many times and compare workspaces rather than check the truth."""
    start = datetime(2026, 6, 1, tzinfo=UTC)
    sandbox = StripeSandbox(
        seed=11, customers=40, start=start, now=start + timedelta(days=150), acquisition_days=120
    )
    with serve_world(sandbox, warehouse, monkeypatch) as world:
        yield world
