"""Demo data for Stripe: each demo workspace is its own simulated Stripe account, all of them
served on one loopback host (the key a request carries picks the account, as on Stripe)."""

from __future__ import annotations

import atexit
import os
import threading
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kpi_pipelines.demo import DEMO_WORKSPACES
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.sandbox.stripe import StripeSandbox, StripeSandboxConfig, create_app
from kpi_pipelines.sandbox.stripe.ids import stable_b62
from kpi_pipelines.warehouse.control import (
    Connection,
    FxRate,
    Workspace,
    add_connection,
    import_fx_rates,
    secret_namespace,
)
from kpi_pipelines.warehouse.database import Warehouse

_lock = threading.Lock()
# The server lives as long as the demo process: the runs it launches read from it.
_running: tuple[dict[str, StripeSandbox], LoopbackServer] | None = None


def _account(workspace_id: str) -> StripeSandbox:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    seed = zlib.crc32(workspace_id.encode())
    return StripeSandbox(
        StripeSandboxConfig(seed=seed, customers=150, start=today - timedelta(days=365), now=today),
        api_key="sk_test_demo" + stable_b62(f"demo-key:{workspace_id}", 24),
    )


def sandbox_for(workspace_id: str) -> StripeSandbox:
    """The demo workspace's simulated account; serves every demo account on first use and
    points KPI_STRIPE_BASE_URL (an operator setting) at them."""
    global _running
    with _lock:
        if _running is None:
            accounts = {w.id: _account(w.id) for w in DEMO_WORKSPACES}
            server = LoopbackServer(create_app(accounts.values())).start()
            atexit.register(server.stop)
            _running = (accounts, server)
        accounts, server = _running
        os.environ["KPI_STRIPE_BASE_URL"] = server.base_url
        return accounts[workspace_id]


def prepare(warehouse: Warehouse, workspace: Workspace, folder: Path) -> dict[str, Any]:
    sandbox = sandbox_for(workspace.id)
    key_variable = f"{secret_namespace(workspace.id)}STRIPE_KEY"
    os.environ[key_variable] = sandbox.api_key
    add_connection(
        warehouse,
        Connection(
            workspace_id=workspace.id, provider="stripe", secret_env={"api_key": key_variable}
        ),
    )
    quote = workspace.reporting_currency
    first = sandbox.start.date() - timedelta(days=2)
    last = sandbox.now.date() + timedelta(days=2)
    import_fx_rates(
        warehouse,
        [
            FxRate(base=base.upper(), quote=q.upper(), day=day, rate=rate)
            for day, base, q, rate in sandbox.truth.fx_rates(first, last)
            if q.upper() == quote and base.upper() != quote
        ],
    )
    return {}
