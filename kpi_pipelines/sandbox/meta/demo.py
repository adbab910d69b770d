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

from kpi_pipelines.sandbox.kit import stable_base36
from kpi_pipelines.sandbox.kit.demo import DemoSlot, LoopbackDemo
from kpi_pipelines.sandbox.meta import MetaSandbox, create_meta_app
from kpi_pipelines.warehouse.control import Workspace, secret_namespace
from kpi_pipelines.warehouse.database import Warehouse


def demo_account_id(workspace_id: str) -> str:
    return str(10**14 + zlib.crc32(workspace_id.encode()))


def _token_variable(workspace_id: str) -> str:
    return f"{secret_namespace(workspace_id)}META_TOKEN"


class MetaDemo(LoopbackDemo):
    def __init__(self, workspaces: Sequence[Workspace]) -> None:
        self.sandbox = MetaSandbox(seed=19, start=datetime.now(UTC), realtime=True, job_steps=1)
        self.tokens: dict[str, str] = {}
        for workspace in workspaces:
            account_id = demo_account_id(workspace.id)
            self.sandbox.add_demo_account(workspace, account_id, name=f"{workspace.name} ads")
            # The same token each start, as the other demos' secrets: the secret canary finds
            # it where the demo ran by starting the simulator again.
            token = f"EAAG{stable_base36(f'meta-demo-token:{workspace.id}', 40)}"
            self.tokens[workspace.id] = self.sandbox.issue_token(
                account_id, lifetime=None, value=token
            )
        super().__init__(create_meta_app(self.sandbox), dated_by=self.sandbox.clock)

    def env(self) -> dict[str, str]:
        env = {"KPI_META_ADS_BASE_URL": self.server.base_url}
        return env | {_token_variable(w): token for w, token in self.tokens.items()}


_demo: DemoSlot[MetaDemo] = DemoSlot("Meta")


start_simulator = _demo.starter(MetaDemo)


def prepare(warehouse: Warehouse, workspace: Workspace, folder: Path) -> dict[str, Any]:
    """Connect the workspace to its simulated ad account (its token named, never stored)."""
    account = {"account_id": demo_account_id(workspace.id)}
    token = {"access_token": _token_variable(workspace.id)}
    _demo.connect(warehouse, workspace, "meta_ads", settings=account, secret_env=token)
    return {}
