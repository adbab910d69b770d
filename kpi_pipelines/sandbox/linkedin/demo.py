"""Demo data for LinkedIn Ads: an ad account per demo workspace on one loopback simulator.

Each workspace's account delivers in the workspace's own hours, in USD (globex's reporting
currency is EUR, so its money is converted with the day's rate: the demo adds USD rates the
fx table lacks, never changing one it has). The operator's OAuth client and each
workspace's refresh token go in the variables runs read; the simulator's clock follows real
time. The demo sets KPI_LINKEDIN_VERSION to this month's version, as an operator keeps it
current (LinkedIn retires each version after a year; the pinned one is the tests' concern).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from kpi_pipelines.sandbox.kit import stable_digits
from kpi_pipelines.sandbox.kit.demo import DemoSlot, LoopbackDemo
from kpi_pipelines.sandbox.linkedin.app import create_linkedin_app
from kpi_pipelines.sandbox.linkedin.sandbox import LinkedInSandbox
from kpi_pipelines.warehouse.control import (
    FxRate,
    Workspace,
    import_fx_rates,
    secret_namespace,
)
from kpi_pipelines.warehouse.database import Warehouse

CLIENT_ID = "linkedin-demo-client"
# Well-known like the other sandboxes' demo secrets: the same each start (the secret canary
# finds them where the demo ran by starting the simulator again).
CLIENT_SECRET = "linkedin-demo-client-secret"
CURRENCY = "USD"
HISTORY_DAYS = 90  # what a first sync reads


def account_id(workspace_id: str) -> str:
    return stable_digits(f"linkedin-demo:{workspace_id}", 9)


def _token_variable(workspace_id: str) -> str:
    return f"{secret_namespace(workspace_id)}LINKEDIN_REFRESH_TOKEN"


class LinkedInDemo(LoopbackDemo):
    def __init__(self, workspaces: Sequence[Workspace]) -> None:
        self.sandbox = LinkedInSandbox(seed=19, start=datetime.now(UTC), realtime=True)
        self.sandbox.register_client(CLIENT_ID, CLIENT_SECRET)
        self.tokens: dict[str, str] = {}
        for workspace in workspaces:
            self.sandbox.add_account(
                account_id(workspace.id),
                name=f"{workspace.name} (LinkedIn)",
                time_zone=workspace.timezone,
                currency=CURRENCY,
                campaigns=6,
                history_days=HISTORY_DAYS + 40,
            )
            token = self.tokens[workspace.id] = f"AQXdemo-{workspace.id}-refresh-token"
            self.sandbox.add_member(
                f"member-{workspace.id}",
                refresh_token=token,
                client_id=CLIENT_ID,
                accounts=[account_id(workspace.id)],
            )
        super().__init__(create_linkedin_app(self.sandbox), dated_by=self.sandbox.clock)

    def env(self) -> dict[str, str]:
        env = {
            "KPI_LINKEDIN_ADS_BASE_URL": self.server.url("/rest"),
            "KPI_LINKEDIN_TOKEN_URL": self.server.url("/oauth/v2/accessToken"),
            "KPI_LINKEDIN_CLIENT_ID": CLIENT_ID,
            "KPI_LINKEDIN_CLIENT_SECRET": CLIENT_SECRET,
            "KPI_LINKEDIN_VERSION": self.sandbox.clock.now().strftime("%Y%m"),
        }
        env.update({_token_variable(w): token for w, token in self.tokens.items()})
        return env


_demo: DemoSlot[LinkedInDemo] = DemoSlot("LinkedIn")


start_simulator = _demo.starter(LinkedInDemo)


def prepare(warehouse: Warehouse, workspace: Workspace, folder: Path) -> dict[str, Any]:
    """Connect the workspace to its ad account, with the USD rates its days need."""
    account = {"account_id": account_id(workspace.id)}
    token = {"refresh_token": _token_variable(workspace.id)}
    running = _demo.connect(
        warehouse, workspace, "linkedin_ads", settings=account, secret_env=token
    )
    today = running.sandbox.clock.now().date()
    _add_missing_rates(warehouse, workspace.reporting_currency, today, HISTORY_DAYS)
    return {}


def _add_missing_rates(warehouse: Warehouse, quote: str, today: date, days: int) -> None:
    """USD rates into `quote` from `days` before today to a week after it (a running `dev`
    syncs the days to come), for the days the table lacks."""
    if quote.upper() == CURRENCY:
        return
    first = today - timedelta(days=days)
    with warehouse.control() as db:
        held = set(
            db.execute(
                sa.text(
                    "SELECT day FROM fx_rates WHERE base = :base AND quote = :quote"
                    " AND day BETWEEN :first AND :last"
                ),
                {
                    "base": CURRENCY,
                    "quote": quote.upper(),
                    "first": first,
                    "last": today + timedelta(days=7),
                },
            ).scalars()
        )
    # A gentle seasonal walk around a plausible rate; the demo's own, deterministic.
    anchor = {"EUR": 0.92, "GBP": 0.79, "JPY": 151.0}.get(quote.upper(), 1.0)
    import_fx_rates(
        warehouse,
        [
            FxRate(
                base=CURRENCY,
                quote=quote.upper(),
                day=day,
                rate=round(anchor * (1 + 0.02 * math.sin(day.toordinal() / 9)), 6),
            )
            for day in (first + timedelta(days=n) for n in range(days + 8))
            if day not in held
        ],
    )
