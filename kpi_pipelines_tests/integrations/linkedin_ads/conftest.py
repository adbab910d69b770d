"""The world LinkedIn Ads tests run in: the LinkedIn simulator on loopback (its responses
dated by its clock), the operator's OAuth client and hosts in the environment, workspaces
connected to its ad accounts, and syncs through the real asset on the real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import dagster as dg
import pytest

from kpi_pipelines.automation.partitions import register_partition
from kpi_pipelines.demo import materialize_provider
from kpi_pipelines.integrations.linkedin_ads.adapter import LINKEDIN, LinkedInAdsAdapter
from kpi_pipelines.sandbox.kit.ads import AdAccount, AdMetrics
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.sandbox.linkedin import LinkedInSandbox, create_linkedin_app
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

CLIENT_ID, CLIENT_SECRET = "linkedin-test-client", "linkedin-test-client-secret-value"
Key = tuple[str, date, str | None]  # metric, day, campaign id (None: the account)


def expected(cells: dict[Any, AdMetrics]) -> dict[Key, float]:
    """kpi_data's points for the truth's cells: {(campaign, day) or day: AdMetrics}."""
    out: dict[Key, float] = {}
    for cell, metrics in cells.items():
        campaign, day = cell if isinstance(cell, tuple) else (None, cell)
        for metric, value in metrics.kpis().items():
            out[(metric, day, campaign)] = value
    return out


@dataclass
class LinkedInWorld:
    sandbox: LinkedInSandbox
    server: LoopbackServer
    warehouse: Warehouse
    instance: dg.DagsterInstance
    monkeypatch: pytest.MonkeyPatch

    def account(self, account_id: str, **options: Any) -> AdAccount:
        options.setdefault("campaigns", 5)
        options.setdefault("history_days", 120)
        return self.sandbox.add_account(account_id, **options)

    def workspace(
        self,
        workspace_id: str,
        account_id: str,
        *,
        currency: str = "USD",
        timezone: str = "UTC",
        roles: tuple[str, ...] | None = None,
        grant_lifetime: timedelta = timedelta(days=365),
        **settings: Any,
    ) -> Workspace:
        """A workspace whose member has a role on `roles` (default: the account), connected
        to `account_id`, with its partition."""
        workspace = add_workspace(
            self.warehouse,
            Workspace(
                id=workspace_id,
                name=workspace_id,
                reporting_currency=currency,
                timezone=timezone,
            ),
        )
        variable = f"{secret_namespace(workspace_id)}LINKEDIN_REFRESH_TOKEN"
        token = f"AQX-refresh-{workspace_id}-value-0123456789"
        self.monkeypatch.setenv(variable, token)
        self.sandbox.add_member(
            f"member-{workspace_id}",
            refresh_token=token,
            client_id=CLIENT_ID,
            accounts=roles if roles is not None else (account_id,),
            lifetime=grant_lifetime,
        )
        add_connection(
            self.warehouse,
            Connection(
                workspace_id=workspace_id,
                provider="linkedin_ads",
                settings={"account_id": account_id, **settings},
                secret_env={"refresh_token": variable},
            ),
        )
        register_partition(self.instance, workspace_id, "linkedin_ads")
        return workspace

    def sync(
        self, workspace_id: str, run_config: dict[str, Any] | None = None, **adapter: Any
    ) -> dg.ExecuteInProcessResult:
        adapter.setdefault("backoff_base_seconds", 0.01)
        return materialize_provider(
            self.warehouse,
            self.instance,
            "linkedin_ads",
            workspace_id,
            run_config,
            adapter=LinkedInAdsAdapter(**adapter),
        )

    def points(self, workspace_id: str, metric: str | None = None) -> dict[Key, float]:
        found = read_points(self.warehouse, workspace_id, source="linkedin_ads", metric=metric)
        return {
            (p.metric, p.timestamp.date(), p.dimensions.get("campaign_id")): p.value for p in found
        }

    def rates(self, quote: str, rates: dict[date, float], base: str = "USD") -> None:
        import_fx_rates(
            self.warehouse,
            [FxRate(base=base, quote=quote, day=day, rate=r) for day, r in rates.items()],
        )


@pytest.fixture
def linkedin(warehouse, dagster_instance, monkeypatch) -> Iterator[LinkedInWorld]:
    sandbox = LinkedInSandbox(seed=5)
    sandbox.register_client(CLIENT_ID, CLIENT_SECRET)
    with LoopbackServer(create_linkedin_app(sandbox), dated_by=sandbox.clock) as server:
        monkeypatch.setenv("KPI_LINKEDIN_ADS_BASE_URL", server.url("/rest"))
        monkeypatch.setenv(LINKEDIN.token_url_variable, server.url("/oauth/v2/accessToken"))
        monkeypatch.setenv(LINKEDIN.client_variables["client_id"], CLIENT_ID)
        monkeypatch.setenv(LINKEDIN.client_variables["client_secret"], CLIENT_SECRET)
        monkeypatch.delenv("KPI_LINKEDIN_VERSION", raising=False)
        yield LinkedInWorld(sandbox, server, warehouse, dagster_instance, monkeypatch)
