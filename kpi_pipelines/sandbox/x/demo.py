"""Demo data for X Ads: each demo workspace's ads account on one loopback X Ads API, on the
real clock. Acme's account reports in Los Angeles days and dollars, Globex's in Berlin days
and euros. The deployment's app (consumer key and secret) and each workspace's user token
and token secret go in variables (the token's in its workspace's namespace, which its
connection names); all are derived from the workspace, so a restart serves the same ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kpi_pipelines.sandbox.kit import stable_base36, stable_digits
from kpi_pipelines.sandbox.kit.demo import DemoSlot, LoopbackDemo
from kpi_pipelines.sandbox.x.app import create_x_app
from kpi_pipelines.sandbox.x.sandbox import XSandbox
from kpi_pipelines.warehouse.control import Workspace, secret_namespace
from kpi_pipelines.warehouse.database import Warehouse

DEMO_CONSUMER_KEY = "xdemoConsumerKey0000000001"
DEMO_CONSUMER_SECRET = "xdemo-consumer-secret-0f5e9a7c3b2d4e6f8a1b"
# A first sync reads this much: its windows of more than 7 days run as async jobs.
HISTORY_DAYS = 30


def demo_account_id(workspace_id: str) -> str:
    return stable_base36(f"x-demo-account:{workspace_id}", 11)


def _variables(workspace_id: str) -> dict[str, str]:
    namespace = secret_namespace(workspace_id)
    return {
        "access_token": f"{namespace}X_ACCESS_TOKEN",
        "access_token_secret": f"{namespace}X_ACCESS_TOKEN_SECRET",
    }


class XDemo(LoopbackDemo):
    def __init__(self, workspaces: Sequence[Workspace]) -> None:
        # One step per job: a demo's job is done when first asked about.
        self.sandbox = XSandbox(seed=23, start=datetime.now(UTC), realtime=True, job_steps=1)
        self.sandbox.register_app(DEMO_CONSUMER_KEY, DEMO_CONSUMER_SECRET)
        self.secrets: dict[str, str] = {}
        for workspace in workspaces:
            account_id = demo_account_id(workspace.id)
            self.sandbox.add_demo_account(workspace, account_id, name=f"{workspace.name} on X")
            user = stable_digits(f"x-demo-user:{workspace.id}", 18)
            grant = self.sandbox.authorize(
                DEMO_CONSUMER_KEY,
                account_id,
                token=f"{user}-{stable_base36(f'x-demo-token:{workspace.id}', 24)}",
                token_secret=stable_base36(f"x-demo-token-secret:{workspace.id}", 24),
            )
            names = _variables(workspace.id)
            self.secrets[names["access_token"]] = grant.token
            self.secrets[names["access_token_secret"]] = grant.token_secret
        super().__init__(create_x_app(self.sandbox), dated_by=self.sandbox.clock)

    def env(self) -> dict[str, str]:
        return {
            "KPI_X_ADS_BASE_URL": self.server.base_url,
            "KPI_X_ADS_CONSUMER_KEY": DEMO_CONSUMER_KEY,
            "KPI_X_ADS_CONSUMER_SECRET": DEMO_CONSUMER_SECRET,
            **self.secrets,
        }


_demo: DemoSlot[XDemo] = DemoSlot("X Ads")


start_simulator = _demo.starter(XDemo)


def prepare(warehouse: Warehouse, workspace: Workspace, folder: Path) -> dict[str, Any]:
    """Connect the workspace to its simulated ads account (its token named, never stored)."""
    account = {"account_id": demo_account_id(workspace.id)}
    _demo.connect(
        warehouse, workspace, "x_ads", settings=account, secret_env=_variables(workspace.id)
    )
    return {"history_days": HISTORY_DAYS}
