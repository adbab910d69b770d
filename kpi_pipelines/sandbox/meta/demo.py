"""Demo data for Meta: each demo workspace's ad account on one loopback Graph API, on the
real clock. Acme's account reports in Los Angeles days and dollars, Globex's in Berlin days
and euros; each workspace's token goes in a variable of its namespace, which its
connection names."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kpi_pipelines.demo import DemoSimulator
from kpi_pipelines.sandbox.kit.demo import DemoSlot, LoopbackDemo
from kpi_pipelines.sandbox.meta import MetaSandbox, create_meta_app
from kpi_pipelines.warehouse.control import Connection, Workspace, add_connection, secret_namespace
from kpi_pipelines.warehouse.database import Warehouse

ACCOUNTS = {"acme": ("America/Los_Angeles", "USD"), "globex": ("Europe/Berlin", "EUR")}


def demo_account_id(workspace_id: str) -> str:
    return str(10**14 + zlib.crc32(workspace_id.encode()))


def _token_variable(workspace_id: str) -> str:
    return f"{secret_namespace(workspace_id)}META_TOKEN"


class MetaDemo(LoopbackDemo):
    def __init__(self, workspaces: Sequence[Workspace]) -> None:
        self.sandbox = MetaSandbox(seed=19, start=datetime.now(UTC), realtime=True, job_steps=1)
        self.tokens: dict[str, str] = {}
        for workspace in workspaces:
            zone, currency = ACCOUNTS.get(
                workspace.id, (workspace.timezone, workspace.reporting_currency)
            )
            account_id = demo_account_id(workspace.id)
            self.sandbox.add_account(
                account_id,
                time_zone=zone,
                currency=currency,
                name=f"{workspace.name} ads",
                campaigns=8,
            )
            self.tokens[workspace.id] = self.sandbox.issue_token(account_id, lifetime=None)
        super().__init__(create_meta_app(self.sandbox), dated_by=self.sandbox.clock)

    def env(self) -> dict[str, str]:
        env = {"KPI_META_ADS_BASE_URL": self.server.base_url}
        return env | {_token_variable(w): token for w, token in self.tokens.items()}


_demo: DemoSlot[MetaDemo] = DemoSlot("Meta")


def start_simulator(workspaces: Sequence[Workspace], folder: Path) -> DemoSimulator:
    return _demo.start(lambda: MetaDemo(workspaces))


def prepare(warehouse: Warehouse, workspace: Workspace, folder: Path) -> dict[str, Any]:
    """Connect the workspace to its simulated ad account (its token named, never stored)."""
    _demo.get()
    add_connection(
        warehouse,
        Connection(
            workspace_id=workspace.id,
            provider="meta_ads",
            settings={"account_id": demo_account_id(workspace.id)},
            secret_env={"access_token": _token_variable(workspace.id)},
        ),
    )
    return {}
