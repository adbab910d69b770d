"""Demo data for google_analytics: a simulated GA4 property per workspace, on loopback.

The demo process serves one Google sandbox (token endpoint, GA4 Data API, Sheets v4) from
a background thread, points `KPI_GOOGLE_*` at it and puts the sandbox's demo OAuth client
in `KPI_DEMO_GOOGLE_*` variables, which the demo connections name. Production never runs
this; the sandbox's clock follows real time so the demo's days are today's.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kpi_pipelines.sandbox.google import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_REFRESH_TOKEN,
    GoogleSandbox,
    create_google_app,
)
from kpi_pipelines.sandbox.server import LoopbackServer
from kpi_pipelines.warehouse.control import Connection, Workspace, add_connection
from kpi_pipelines.warehouse.database import Warehouse

# The variables demo connections name for their Google OAuth secrets.
DEMO_SECRET_ENV = {
    "client_id": "KPI_DEMO_GOOGLE_CLIENT_ID",
    "client_secret": "KPI_DEMO_GOOGLE_CLIENT_SECRET",
    "refresh_token": "KPI_DEMO_GOOGLE_REFRESH_TOKEN",
}
_DEMO_SECRET_VALUES = {
    "client_id": DEMO_CLIENT_ID,
    "client_secret": DEMO_CLIENT_SECRET,
    "refresh_token": DEMO_REFRESH_TOKEN,
}

_lock = threading.Lock()
_running: tuple[GoogleSandbox, LoopbackServer] | None = None


def google_demo_sandbox() -> GoogleSandbox:
    """The demo process's one Google sandbox, started on first use and served until exit.

    Sets KPI_GOOGLE_TOKEN_URL, KPI_GOOGLE_ANALYTICS_BASE_URL, KPI_GOOGLE_SHEETS_BASE_URL and
    the KPI_DEMO_GOOGLE_* secret variables in this process's environment.
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
        for purpose, name in DEMO_SECRET_ENV.items():
            os.environ[name] = _DEMO_SECRET_VALUES[purpose]
        return sandbox


def demo_property_id(workspace_id: str) -> str:
    """A stable, numeric GA4 property id per demo workspace."""
    digest = int(hashlib.sha256(workspace_id.encode()).hexdigest()[:7], 16)
    return str(300_000_000 + digest)


def prepare(warehouse: Warehouse, workspace: Workspace, folder: Path) -> dict[str, Any]:
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
            secret_env=dict(DEMO_SECRET_ENV),
        ),
    )
    return {}
