"""Demo data for csv_upload: a deterministic CSV of custom metrics per workspace."""

from __future__ import annotations

import csv
import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from kpi_pipelines.warehouse.control import Connection, Workspace, add_connection
from kpi_pipelines.warehouse.database import Warehouse

DEMO_MAPPING = {
    "date_column": "Date",
    "metric_column": "Metric",
    "value_column": "Value",
    "dimension_columns": ["Team"],
    "thousands_separator": ",",
    "currency_symbols": "$€",
}


def write_demo_csv(
    path: Path, workspace_id: str, *, days: int = 60, end: date | None = None
) -> Path:
    """Signups and support tickets per team, seeded by the workspace id (same file every time)."""
    rng = random.Random(f"csv-demo-{workspace_id}")
    end = end or date.today()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Date", "Metric", "Team", "Value"])
        for offset in range(days, 0, -1):
            day = end - timedelta(days=offset)
            for team in ("growth", "support"):
                writer.writerow([day.isoformat(), "signups", team, rng.randint(5, 60)])
                writer.writerow(
                    [day.isoformat(), "support_tickets", team, f"{rng.randint(0, 1500):,}"]
                )
            writer.writerow(
                [day.isoformat(), "marketing_budget", "", f"${rng.randint(800, 2400):,}.00"]
            )
    return path


def prepare(warehouse: Warehouse, workspace: Workspace, folder: Path) -> dict[str, Any]:
    """Connect the workspace to csv_upload and return the run config that imports its file."""
    add_connection(
        warehouse,
        Connection(
            workspace_id=workspace.id, provider="csv_upload", settings={"mapping": DEMO_MAPPING}
        ),
    )
    path = write_demo_csv(folder / "custom_metrics.csv", workspace.id)
    return {"path": str(path)}
