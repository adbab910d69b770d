"""A Google sandbox served on loopback per test, and helpers to sync GA4 through Dagster."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pytest

from kpi_pipelines.definitions import PROVIDERS
from kpi_pipelines.integrations.google_analytics.adapter import GoogleAnalyticsAdapter
from kpi_pipelines.resources import WarehouseResource
from kpi_pipelines.sandbox.google import (
    GA4Property,
    GoogleSandbox,
)
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.warehouse.control import Connection, Workspace, add_connection, add_workspace
from kpi_pipelines.warehouse.database import Warehouse
from kpi_pipelines_tests.integrations.google_sandbox import google_secret_env, served_google_sandbox

google_analytics_kpis = PROVIDERS["google_analytics"].asset


@dataclass
class GA4World:
    sandbox: GoogleSandbox
    server: LoopbackServer
    warehouse: Warehouse
    instance: dg.DagsterInstance
    monkeypatch: pytest.MonkeyPatch

    def property(self, property_id: str, **options: Any) -> GA4Property:
        options.setdefault("history_days", 100)
        options.setdefault("daily_sessions", 120)
        return self.sandbox.add_property(property_id, **options)

    def workspace(
        self, workspace_id: str, property_id: str, *, lookback_days: int = 3
    ) -> Workspace:
        workspace = add_workspace(self.warehouse, Workspace(id=workspace_id, name=workspace_id))
        add_connection(
            self.warehouse,
            Connection(
                workspace_id=workspace_id,
                provider="google_analytics",
                settings={"property_id": property_id, "lookback_days": lookback_days},
                secret_env=google_secret_env(workspace_id, self.monkeypatch),
            ),
        )
        self.instance.add_dynamic_partitions("workspace", [workspace_id])
        return workspace

    def sync(
        self, workspace_id: str, run_config: dict[str, Any] | None = None, **adapter: Any
    ) -> dg.ExecuteInProcessResult:
        adapter.setdefault("backoff_base_seconds", 0.01)
        return dg.materialize(
            [google_analytics_kpis],
            instance=self.instance,
            partition_key=workspace_id,
            resources={
                "warehouse": WarehouseResource(),
                "google_analytics": GoogleAnalyticsAdapter(**adapter),
            },
            run_config={"ops": {google_analytics_kpis.op.name: {"config": run_config or {}}}},
            raise_on_error=False,
        )


@pytest.fixture
def ga4(warehouse, dagster_instance, monkeypatch) -> Iterator[GA4World]:
    with served_google_sandbox(
        monkeypatch, seed=3, base_url_variable="KPI_GOOGLE_ANALYTICS_BASE_URL"
    ) as served:
        yield GA4World(*served, warehouse, dagster_instance, monkeypatch)
