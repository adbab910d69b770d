"""An X sandbox served on loopback per test (dated by its own clock), with the operator's
app in the environment, and helpers to connect workspaces and sync them through Dagster."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Self

import dagster as dg
import pytest
import sqlalchemy as sa

from kpi_pipelines.automation.partitions import register_partition
from kpi_pipelines.demo import materialize_provider
from kpi_pipelines.integrations.shared.ad_metrics import AD_METRICS
from kpi_pipelines.integrations.x_ads.adapter import APP_VARIABLES, XAdsAdapter
from kpi_pipelines.sandbox.kit.ads import WEB_PURCHASES, AdAccount, AdMetrics, ConversionRule
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.sandbox.x import Grant, XSandbox, create_x_app
from kpi_pipelines.warehouse.control import (
    Connection,
    FxRate,
    Workspace,
    add_connection,
    add_workspace,
    import_fx_rates,
    list_connections,
    secret_namespace,
)
from kpi_pipelines.warehouse.database import Warehouse
from kpi_pipelines.warehouse.tenant_data import StoredPoint, read_points

CONSUMER_KEY, CONSUMER_SECRET = "test-app-consumer-key", "test-app-consumer-secret-9f8e7d"
# (metric, day, campaign id or None for the account)
Key = tuple[str, date, str | None]


@dataclass
class XAdsWorld:
    sandbox: XSandbox
    server: LoopbackServer
    warehouse: Warehouse
    instance: dg.DagsterInstance
    monkeypatch: pytest.MonkeyPatch
    grants: dict[str, Grant] = field(default_factory=dict)

    @classmethod
    @contextmanager
    def served(
        cls,
        warehouse: Warehouse,
        instance: dg.DagsterInstance,
        monkeypatch: pytest.MonkeyPatch,
        **sandbox: Any,
    ) -> Iterator[Self]:
        """A sandbox (dated by its own clock) with the operator's app in the environment."""
        simulated = XSandbox(seed=11, **sandbox)
        simulated.register_app(CONSUMER_KEY, CONSUMER_SECRET)
        monkeypatch.setenv(APP_VARIABLES["consumer_key"], CONSUMER_KEY)
        monkeypatch.setenv(APP_VARIABLES["consumer_secret"], CONSUMER_SECRET)
        with LoopbackServer(create_x_app(simulated), dated_by=simulated.clock) as server:
            monkeypatch.setenv("KPI_X_ADS_BASE_URL", server.base_url)
            yield cls(simulated, server, warehouse, instance, monkeypatch)

    def account(self, account_id: str, **options: Any) -> AdAccount:
        options.setdefault("campaigns", 10)
        options.setdefault("history_days", 120)
        return self.sandbox.add_account(account_id, **options)

    def connect(
        self,
        workspace_id: str,
        account_id: str,
        *,
        reporting_currency: str = "USD",
        authorized: tuple[str, ...] | None = None,
        **settings: Any,
    ) -> Grant:
        """A workspace whose connection names its user's token (in its namespace) for the
        account (the user may use `authorized`, by default that account); the app is the
        operator's."""
        add_workspace(
            self.warehouse,
            Workspace(id=workspace_id, name=workspace_id, reporting_currency=reporting_currency),
        )
        grant = self.sandbox.authorize(CONSUMER_KEY, *(authorized or (account_id,)))
        names = {
            "access_token": f"{secret_namespace(workspace_id)}X_TOKEN",
            "access_token_secret": f"{secret_namespace(workspace_id)}X_TOKEN_SECRET",
        }
        self.monkeypatch.setenv(names["access_token"], grant.token)
        self.monkeypatch.setenv(names["access_token_secret"], grant.token_secret)
        add_connection(
            self.warehouse,
            Connection(
                workspace_id=workspace_id,
                provider="x_ads",
                settings={"account_id": account_id, **settings},
                secret_env=names,
            ),
        )
        register_partition(self.instance, workspace_id, "x_ads")
        self.grants[workspace_id] = grant
        return grant

    def sync(
        self, workspace_id: str, run_config: dict[str, Any] | None = None, **adapter: Any
    ) -> dg.ExecuteInProcessResult:
        adapter.setdefault("backoff_base_seconds", 0.01)
        adapter.setdefault("job_poll_seconds", 0.01)
        adapter.setdefault("job_poll_max_seconds", 0.05)
        return materialize_provider(
            self.warehouse,
            self.instance,
            "x_ads",
            workspace_id,
            run_config,
            adapter=XAdsAdapter(**adapter),
        )

    def rates(self, base: str, quote: str, first: date, last: date, rate: float) -> None:
        days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        import_fx_rates(
            self.warehouse, [FxRate(base=base, quote=quote, day=d, rate=rate) for d in days]
        )

    def connection(self, workspace_id: str) -> Connection:
        with self.warehouse.control() as db:
            [connection] = list_connections(db, provider="x_ads", workspace_id=workspace_id)
        return connection

    def points(self, workspace_id: str) -> list[StoredPoint]:
        return read_points(self.warehouse, workspace_id, source="x_ads")

    def stored(self, workspace_id: str) -> dict[Key, float]:
        return {
            (p.metric, p.timestamp.date(), p.dimensions.get("campaign_id")): p.value
            for p in self.points(workspace_id)
        }

    def audit_rows(self, workspace_id: str) -> int:
        with self.warehouse.tenant(workspace_id, actor="test") as db:
            return db.execute(sa.text("SELECT count(*) FROM audit_log")).scalar_one()


def truth(
    account: AdAccount,
    first: date,
    last: date,
    *,
    rule: ConversionRule = WEB_PURCHASES,
    rate: float = 1.0,
) -> dict[Key, float]:
    """The account's own record as points: per campaign and for the account, money at
    `rate` (every metric of kpi-definitions, ratios where defined)."""
    out: dict[Key, float] = {}
    cells: list[tuple[date, str | None, AdMetrics]] = [
        (day, cid, m)
        for (cid, day), m in account.truth_by_campaign_day(first, last, rule=rule).items()
    ]
    cells += [(day, None, m) for day, m in account.truth_by_day(first, last, rule=rule).items()]
    for day, cid, metrics in cells:
        for name, value in metrics.kpis().items():
            money = name in ("ad_spend", "conversion_value", "cpc", "cpm")
            out[(name, day, cid)] = value * rate if money else value
    assert {name for name, _, _ in out} <= set(AD_METRICS)
    return out


def assert_matches(stored: dict[Key, float], expected: dict[Key, float]) -> None:
    assert stored.keys() == expected.keys()
    for key, value in expected.items():
        assert stored[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key


@pytest.fixture
def x(warehouse, dagster_instance, monkeypatch) -> Iterator[XAdsWorld]:
    with XAdsWorld.served(warehouse, dagster_instance, monkeypatch) as world:
        yield world
