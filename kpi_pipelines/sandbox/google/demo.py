"""Demo data for the Google providers: a simulated GA4 property and a marketing sheet per
workspace, served on loopback.

The demo process serves one Google sandbox (token endpoint, GA4 Data API, Sheets v4) from
a background thread, points `KPI_GOOGLE_*` at it (the operator's settings: hosts and the
OAuth client), and puts each demo workspace's refresh token in a variable of that
workspace's namespace, which its connections name. Production never runs this; the
sandbox's clock follows real time so the demo's days are today's.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import random
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kpi_pipelines.integrations.shared.oauth import GOOGLE_CLIENT_VARIABLES
from kpi_pipelines.sandbox.google import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_REFRESH_TOKEN,
    DateTime,
    GoogleSandbox,
    Number,
    create_google_app,
    currency,
    percent,
)
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.warehouse.control import (
    Connection,
    Workspace,
    add_connection,
    secret_namespace,
)
from kpi_pipelines.warehouse.database import Warehouse


def demo_secret_env(workspace_id: str) -> dict[str, str]:
    """The variable a demo workspace's Google connections name for their refresh token
    (set to the sandbox's demo token by `google_demo_sandbox`)."""
    variable = f"{secret_namespace(workspace_id)}GOOGLE_REFRESH_TOKEN"
    os.environ[variable] = DEMO_REFRESH_TOKEN
    return {"refresh_token": variable}


_lock = threading.Lock()
_running: tuple[GoogleSandbox, LoopbackServer] | None = None


def google_demo_sandbox() -> GoogleSandbox:
    """The demo process's one Google sandbox, started on first use and served until exit.

    Sets KPI_GOOGLE_TOKEN_URL, KPI_GOOGLE_ANALYTICS_BASE_URL, KPI_GOOGLE_SHEETS_BASE_URL and
    the operator's OAuth client (KPI_GOOGLE_CLIENT_ID, KPI_GOOGLE_CLIENT_SECRET) in this
    process's environment.
    """
    global _running
    with _lock:
        if _running is None:
            sandbox = GoogleSandbox(seed=7, start=datetime.now(UTC), realtime=True)
            sandbox.register_client(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
            sandbox.add_refresh_token(DEMO_REFRESH_TOKEN, DEMO_CLIENT_ID)
            server = LoopbackServer(create_google_app(sandbox)).start()
            atexit.register(server.stop)
            _running = (sandbox, server)
        sandbox, server = _running
        os.environ["KPI_GOOGLE_TOKEN_URL"] = server.url("/token")
        os.environ["KPI_GOOGLE_ANALYTICS_BASE_URL"] = server.base_url
        os.environ["KPI_GOOGLE_SHEETS_BASE_URL"] = server.base_url
        os.environ[GOOGLE_CLIENT_VARIABLES["client_id"]] = DEMO_CLIENT_ID
        os.environ[GOOGLE_CLIENT_VARIABLES["client_secret"]] = DEMO_CLIENT_SECRET
        return sandbox


def demo_property_id(workspace_id: str) -> str:
    """A stable, numeric GA4 property id per demo workspace."""
    digest = int(hashlib.sha256(workspace_id.encode()).hexdigest()[:7], 16)
    return str(300_000_000 + digest)


def prepare_analytics(warehouse: Warehouse, workspace: Workspace, folder: Path) -> dict[str, Any]:
    """Give the workspace a simulated GA4 property (in its own time zone) and connect it."""
    sandbox = google_demo_sandbox()
    property_id = demo_property_id(workspace.id)
    if property_id not in sandbox.ga4.properties:
        size = 150 + int(property_id) % 400  # sessions a day: each workspace its own site
        sandbox.add_property(
            property_id, time_zone=workspace.timezone, history_days=120, daily_sessions=size
        )
    add_connection(
        warehouse,
        Connection(
            workspace_id=workspace.id,
            provider="google_analytics",
            settings={"property_id": property_id, "lookback_days": 3},
            secret_env=demo_secret_env(workspace.id),
        ),
    )
    return {}


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


def prepare_sheets(warehouse: Warehouse, workspace: Workspace, folder: Path) -> dict[str, Any]:
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
