"""Demo data for the Google providers: a simulated GA4 property and a marketing sheet per
workspace, served on loopback.

One Google sandbox (token endpoint, GA4 Data API, Sheets v4) serves every demo workspace; its
variables point `KPI_GOOGLE_*` at it (the operator's settings: hosts and the OAuth client)
and put each demo workspace's refresh token in a variable of that workspace's namespace,
which its connections name. Production never runs this; the sandbox's clock follows real
time so the demo's days are today's.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kpi_pipelines.demo import DemoSimulator
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


def _token_variable(workspace_id: str) -> str:
    return f"{secret_namespace(workspace_id)}GOOGLE_REFRESH_TOKEN"


class GoogleDemo:
    """The demo workspaces' GA4 properties and spreadsheets on one loopback sandbox."""

    def __init__(self, workspaces: Sequence[Workspace]) -> None:
        self.workspaces = list(workspaces)
        self.sandbox = GoogleSandbox(seed=7, start=datetime.now(UTC), realtime=True)
        self.sandbox.register_client(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
        self.sandbox.add_refresh_token(DEMO_REFRESH_TOKEN, DEMO_CLIENT_ID)
        for workspace in self.workspaces:
            _add_property(self.sandbox, workspace)
            _add_spreadsheet(self.sandbox, workspace)
        self.server = LoopbackServer(create_google_app(self.sandbox)).start()

    def env(self) -> dict[str, str]:
        env = {
            "KPI_GOOGLE_TOKEN_URL": self.server.url("/token"),
            "KPI_GOOGLE_ANALYTICS_BASE_URL": self.server.base_url,
            "KPI_GOOGLE_SHEETS_BASE_URL": self.server.base_url,
            GOOGLE_CLIENT_VARIABLES["client_id"]: DEMO_CLIENT_ID,
            GOOGLE_CLIENT_VARIABLES["client_secret"]: DEMO_CLIENT_SECRET,
        }
        env.update({_token_variable(w.id): DEMO_REFRESH_TOKEN for w in self.workspaces})
        return env

    def follow_clock(self, webhook_base_url: str | None) -> int:
        return 0  # the sandbox's clock is real time already; Google sends no webhooks

    def stop(self) -> None:
        self.server.stop()


_lock = threading.Lock()
_running: GoogleDemo | None = None


def start_simulator(workspaces: Sequence[Workspace], folder: Path) -> DemoSimulator:
    global _running
    with _lock:
        _running = GoogleDemo(workspaces)
        return _running


def _started() -> GoogleDemo:
    if _running is None:
        raise RuntimeError("the Google demo simulator is not started (start_demo_stack)")
    return _running


def demo_property_id(workspace_id: str) -> str:
    """A stable, numeric GA4 property id per demo workspace."""
    digest = int(hashlib.sha256(workspace_id.encode()).hexdigest()[:7], 16)
    return str(300_000_000 + digest)


def _add_property(sandbox: GoogleSandbox, workspace: Workspace) -> None:
    """The workspace's simulated GA4 property, in its own time zone, its own size."""
    property_id = demo_property_id(workspace.id)
    size = 150 + int(property_id) % 400  # sessions a day
    sandbox.add_property(
        property_id, time_zone=workspace.timezone, history_days=120, daily_sessions=size
    )


def prepare_analytics(warehouse: Warehouse, workspace: Workspace, folder: Path) -> dict[str, Any]:
    """Connect the workspace to its simulated GA4 property."""
    _started()
    add_connection(
        warehouse,
        Connection(
            workspace_id=workspace.id,
            provider="google_analytics",
            settings={"property_id": demo_property_id(workspace.id), "lookback_days": 3},
            secret_env={"refresh_token": _token_variable(workspace.id)},
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


def _add_spreadsheet(sandbox: GoogleSandbox, workspace: Workspace) -> None:
    sandbox.add_spreadsheet(
        demo_spreadsheet_id(workspace.id),
        {
            SHEET: demo_rows(workspace.id, sandbox.now().date()),
            "Notes": [["Owner", "growth@example.com"]],
        },
        title=f"{workspace.name} KPIs",
    )


def prepare_sheets(warehouse: Warehouse, workspace: Workspace, folder: Path) -> dict[str, Any]:
    """Connect the workspace to its demo spreadsheet; the import reads it as it is."""
    _started()
    add_connection(
        warehouse,
        Connection(
            workspace_id=workspace.id,
            provider="google_sheets",
            settings={
                "spreadsheet_id": demo_spreadsheet_id(workspace.id),
                "range": DEMO_RANGE,
                "mapping": DEMO_MAPPING,
            },
            secret_env={"refresh_token": _token_variable(workspace.id)},
        ),
    )
    return {}
