"""Demo data for google_sheets: a marketing sheet per workspace in the demo Google sandbox."""

from __future__ import annotations

import hashlib
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

from kpi_pipelines.integrations.google_analytics.demo import demo_secret_env, google_demo_sandbox
from kpi_pipelines.sandbox.google import DateTime, Number, currency, percent
from kpi_pipelines.warehouse.control import Connection, Workspace, add_connection
from kpi_pipelines.warehouse.database import Warehouse

SHEET = "Marketing KPIs"  # a name with a space: the range must quote it
DEMO_RANGE = f"'{SHEET}'!A1:D"
DEMO_MAPPING = {
    "date_column": "Date",
    "metric_column": "Metric",
    "value_column": "Value",
    "dimension_columns": ["Channel"],
}


def demo_spreadsheet_id(workspace_id: str) -> str:
    return "1KpiDemo" + hashlib.sha256(workspace_id.encode()).hexdigest()[:36]


def demo_rows(workspace_id: str, today: Any, days: int = 30) -> list[list[Any]]:
    """Budget, signups and a conversion rate per day, seeded by the workspace id."""
    rng = random.Random(f"sheets-demo-{workspace_id}")
    rows: list[list[Any]] = [["Date", "Metric", "Channel", "Value"]]
    for back in range(days, 0, -1):
        day = DateTime(today - timedelta(days=back))
        for channel in ("newsletter", "webinar"):
            rows.append([day, "signups", channel, Number(rng.randint(3, 80))])
        rows.append([day, "ad_budget", None, currency(rng.randint(300, 1500) + 0.5)])
        rows.append([day, "trial_conversion_rate", None, percent(rng.uniform(0.05, 0.2))])
    return rows


def prepare(warehouse: Warehouse, workspace: Workspace, folder: Path) -> dict[str, Any]:
    """Give the workspace a demo spreadsheet and connect it; the import reads it as it is."""
    sandbox = google_demo_sandbox()
    spreadsheet_id = demo_spreadsheet_id(workspace.id)
    if spreadsheet_id not in sandbox.sheets.spreadsheets:
        today = sandbox.now().date()
        sandbox.add_spreadsheet(
            spreadsheet_id,
            {SHEET: demo_rows(workspace.id, today), "Notes": [["Owner", "growth@example.com"]]},
            title=f"{workspace.name} KPIs",
        )
    add_connection(
        warehouse,
        Connection(
            workspace_id=workspace.id,
            provider="google_sheets",
            settings={
                "spreadsheet_id": spreadsheet_id,
                "range": DEMO_RANGE,
                "mapping": DEMO_MAPPING,
            },
            secret_env=demo_secret_env(workspace.id),
        ),
    )
    return {}
