"""A Google sandbox served on loopback per test, and helpers to import sheets through Dagster."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pytest

from kpi_pipelines_tests.integrations.google_sandbox import GoogleWorld

MAPPING = {
    "date_column": "Date",
    "metric_column": "Metric",
    "value_column": "Value",
    "dimension_columns": ["Channel"],
}


@dataclass
class SheetsWorld(GoogleWorld):
    provider = "google_sheets"

    def workspace(self, workspace_id: str, spreadsheet_id: str, range_: str, **settings: Any):
        settings.setdefault("mapping", MAPPING)
        return self.connect(
            workspace_id, {"spreadsheet_id": spreadsheet_id, "range": range_, **settings}
        )

    def sync(
        self, workspace_id: str, run_config: dict[str, Any] | None = None
    ) -> dg.ExecuteInProcessResult:
        return self.run(workspace_id, run_config)


@pytest.fixture
def sheets(warehouse, dagster_instance, monkeypatch) -> Iterator[SheetsWorld]:
    with SheetsWorld.served(warehouse, dagster_instance, monkeypatch, seed=5) as world:
        yield world
