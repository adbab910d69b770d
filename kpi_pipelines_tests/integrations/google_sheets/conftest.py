"""A Google sandbox served on loopback per test, and helpers to import sheets through Dagster."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pytest

from kpi_pipelines.definitions import PROVIDERS
from kpi_pipelines.integrations.google_sheets.adapter import GoogleSheetsAdapter
from kpi_pipelines.resources import WarehouseResource
from kpi_pipelines.sandbox.google import (
    GoogleSandbox,
)
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.warehouse.control import Connection, Workspace, add_connection, add_workspace
from kpi_pipelines.warehouse.database import Warehouse
from kpi_pipelines_tests.integrations.google_sandbox import google_secret_env, served_google_sandbox

google_sheets_kpis = PROVIDERS["google_sheets"].asset

MAPPING = {
    "date_column": "Date",
    "metric_column": "Metric",
    "value_column": "Value",
    "dimension_columns": ["Channel"],
}


@dataclass
class SheetsWorld:
    sandbox: GoogleSandbox
    server: LoopbackServer
    warehouse: Warehouse
    instance: dg.DagsterInstance
    monkeypatch: pytest.MonkeyPatch

    def workspace(
        self, workspace_id: str, spreadsheet_id: str, range_: str, **settings: Any
    ) -> Workspace:
        workspace = add_workspace(self.warehouse, Workspace(id=workspace_id, name=workspace_id))
        settings.setdefault("mapping", MAPPING)
        add_connection(
            self.warehouse,
            Connection(
                workspace_id=workspace_id,
                provider="google_sheets",
                settings={"spreadsheet_id": spreadsheet_id, "range": range_, **settings},
                secret_env=google_secret_env(workspace_id, self.monkeypatch),
            ),
        )
        self.instance.add_dynamic_partitions("workspace", [workspace_id])
        return workspace

    def sync(
        self, workspace_id: str, run_config: dict[str, Any] | None = None
    ) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [google_sheets_kpis],
            instance=self.instance,
            partition_key=workspace_id,
            resources={"warehouse": WarehouseResource(), "google_sheets": GoogleSheetsAdapter()},
            run_config={"ops": {google_sheets_kpis.op.name: {"config": run_config or {}}}},
            raise_on_error=False,
        )


@pytest.fixture
def sheets(warehouse, dagster_instance, monkeypatch) -> Iterator[SheetsWorld]:
    with served_google_sandbox(
        monkeypatch, seed=5, base_url_variable="KPI_GOOGLE_SHEETS_BASE_URL"
    ) as served:
        yield SheetsWorld(*served, warehouse, dagster_instance, monkeypatch)
