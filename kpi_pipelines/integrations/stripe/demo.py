"""Demo data for Stripe: each demo workspace gets its own simulated business (the sandbox)."""

from __future__ import annotations

import os
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kpi_pipelines.sandbox.server import LoopbackServer
from kpi_pipelines.sandbox.stripe import StripeSandbox, StripeSandboxConfig, create_app
from kpi_pipelines.warehouse.control import (
    Connection,
    FxRate,
    Workspace,
    add_connection,
    import_fx_rates,
)
from kpi_pipelines.warehouse.database import Warehouse

# Servers live as long as the demo process: the runs it launches read from them.
_servers: dict[str, tuple[StripeSandbox, LoopbackServer]] = {}


def sandbox_for(workspace_id: str) -> tuple[StripeSandbox, LoopbackServer]:
    if workspace_id not in _servers:
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        sandbox = StripeSandbox(
            StripeSandboxConfig(
                seed=zlib.crc32(workspace_id.encode()),
                customers=150,
                start=today - timedelta(days=365),
                now=today,
            )
        )
        _servers[workspace_id] = (sandbox, LoopbackServer(create_app(sandbox)).start())
    return _servers[workspace_id]


def prepare(warehouse: Warehouse, workspace: Workspace, folder: Path) -> dict[str, Any]:
    sandbox, server = sandbox_for(workspace.id)
    key_variable = f"KPI_DEMO_STRIPE_KEY_{workspace.id.upper().replace('-', '_')}"
    os.environ[key_variable] = sandbox.api_key
    add_connection(
        warehouse,
        Connection(
            workspace_id=workspace.id,
            provider="stripe",
            settings={"base_url": server.base_url},
            secret_env={"api_key": key_variable},
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
