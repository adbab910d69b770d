"""The Meta sandbox served on loopback per test, and workspaces synced through the real asset."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import dagster as dg
import pytest

from kpi_pipelines.automation.partitions import register_partition
from kpi_pipelines.demo import materialize_provider
from kpi_pipelines.integrations.meta_ads.adapter import MetaAdsAdapter
from kpi_pipelines.sandbox.kit.ads import AdAccount
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.sandbox.meta import MetaSandbox, create_meta_app
from kpi_pipelines.warehouse.control import Connection, Workspace, add_connection, add_workspace
from kpi_pipelines.warehouse.database import Warehouse
from kpi_pipelines.warehouse.tenant_data import read_points

# A sync's tunables in tests: no second is waited that a test does not mean to wait.
FAST = {"backoff_base_seconds": 0.01, "job_poll_seconds": 0.01, "job_poll_max_seconds": 0.05}
Key = tuple[str, date, str | None]  # metric, account day, campaign id (None: the account)


@dataclass
class MetaWorld:
    sandbox: MetaSandbox
    server: LoopbackServer
    warehouse: Warehouse
    instance: dg.DagsterInstance
    monkeypatch: pytest.MonkeyPatch

    def workspace(
        self,
        workspace_id: str,
        account_id: str,
        *,
        reporting_currency: str = "USD",
        account: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> AdAccount:
        """A workspace connected to a new simulated account with a token that reads it."""
        options = {"campaigns": 6, "time_zone": "America/Los_Angeles", **(account or {})}
        ad_account = self.sandbox.add_account(account_id, **options)
        add_workspace(
            self.warehouse,
            Workspace(id=workspace_id, name=workspace_id, reporting_currency=reporting_currency),
        )
        variable = f"WS_{workspace_id.upper().replace('-', '_')}__META_TOKEN"
        self.monkeypatch.setenv(variable, self.sandbox.issue_token(account_id))
        add_connection(
            self.warehouse,
            Connection(
                workspace_id=workspace_id,
                provider="meta_ads",
                settings={"account_id": f"act_{account_id}", **(settings or {})},
                secret_env={"access_token": variable},
            ),
        )
        register_partition(self.instance, workspace_id, "meta_ads")
        return ad_account

    def sync(
        self, workspace_id: str, run_config: Mapping[str, Any] | None = None, **adapter: Any
    ) -> dg.ExecuteInProcessResult:
        """One run of the real meta_ads asset for the workspace."""
        return materialize_provider(
            self.warehouse,
            self.instance,
            "meta_ads",
            workspace_id,
            run_config,
            adapter=MetaAdsAdapter(**{**FAST, **adapter}),
        )

    def stored(self, workspace_id: str) -> dict[Key, float]:
        return {
            (p.metric, p.timestamp.date(), p.dimensions.get("campaign_id")): p.value
            for p in read_points(self.warehouse, workspace_id, source="meta_ads")
        }


def expected(account: AdAccount, start: date, end: date, **truth: Any) -> dict[Key, float]:
    """kpi_data as the account's own truth says it should be, per campaign and account day."""
    out: dict[Key, float] = {}
    for (cid, day), metrics in account.truth_by_campaign_day(start, end, **truth).items():
        out |= {(metric, day, cid): value for metric, value in metrics.kpis().items()}
    for day, metrics in account.truth_by_day(start, end, **truth).items():
        out |= {(metric, day, None): value for metric, value in metrics.kpis().items()}
    return out


@pytest.fixture
def meta(warehouse, dagster_instance, monkeypatch) -> Iterator[MetaWorld]:
    sandbox = MetaSandbox(seed=5)
    with LoopbackServer(create_meta_app(sandbox), dated_by=sandbox.clock) as server:
        monkeypatch.setenv("KPI_META_ADS_BASE_URL", server.base_url)
        yield MetaWorld(sandbox, server, warehouse, dagster_instance, monkeypatch)
