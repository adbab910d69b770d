"""The common part of an ad platform's simulator: one clock, its accounts with the platform's
defaults, its fault script and the tokens it issued. A platform subclasses it, declares its
defaults and adds its own pieces (report jobs, call budgets, error style, routes):

    class XSandbox(AdSandbox):
        restatement = Restatement(conversion_days=3, billing_days=3)
        campaign_id_shape = staticmethod(lambda key: stable_base36(f"x:{key}", 5))

        def __init__(self, **options):
            super().__init__(**options)
            self.jobs = ReportJobs(self.clock, max_size=90 * 20, max_active=...)
            self.budget = CallBudget(self.clock, limit=..., window=timedelta(minutes=15),
                                     aligned=False)

    sandbox = XSandbox(seed=7)                       # fixed clock at DEFAULT_START
    account = sandbox.add_account("18ce54", time_zone="Asia/Tokyo", currency="JPY")
    sandbox.clock.advance(hours=6)                   # tests move time; demos run realtime
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

from kpi_pipelines.sandbox.kit.ads.account import AdAccount, AdAccounts
from kpi_pipelines.sandbox.kit.ads.model import DEFAULT_KINDS, ConversionKind, Restatement
from kpi_pipelines.sandbox.kit.clock import SimClock
from kpi_pipelines.sandbox.kit.faults import FaultInjector
from kpi_pipelines.sandbox.kit.ids import stable_digits
from kpi_pipelines.sandbox.kit.tokens import TokenBook
from kpi_pipelines.warehouse.control import Workspace

DEFAULT_START = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)
# The demo workspaces' ad accounts (time zone, currency): Acme's report in Los Angeles days
# and dollars, Globex's in Berlin days and euros, so the demo shows both kinds of day.
DEMO_ACCOUNT_PLACES = {"acme": ("America/Los_Angeles", "USD"), "globex": ("Europe/Berlin", "EUR")}


def _twelve_digits(key: str) -> str:
    return stable_digits(key, 12)


class AdSandbox:
    """An ad platform's simulated state; subclasses set the class attributes."""

    restatement: ClassVar[Restatement] = Restatement()
    kinds: ClassVar[tuple[ConversionKind, ...]] = DEFAULT_KINDS
    campaign_id_shape: ClassVar[Callable[[str], str]] = staticmethod(_twelve_digits)
    token_prefix: ClassVar[str] = ""

    def __init__(
        self,
        *,
        seed: int = 0,
        start: datetime = DEFAULT_START,
        realtime: bool = False,
        clock: SimClock | None = None,
    ) -> None:
        self.seed = seed
        self.clock = clock or SimClock(start, realtime=realtime)
        self.faults = FaultInjector()
        self.tokens = TokenBook(self.clock, prefix=self.token_prefix)
        self.accounts = AdAccounts(
            self.clock,
            seed=seed,
            restatement=self.restatement,
            kinds=self.kinds,
            campaign_id=type(self).campaign_id_shape,
        )

    def add_account(self, account_id: str, **options: Any) -> AdAccount:
        """A simulated account with the platform's defaults (see AdAccount for options)."""
        return self.accounts.add(account_id, **options)

    def add_demo_account(self, workspace: Workspace, account_id: str, *, name: str) -> AdAccount:
        """A demo workspace's account: in DEMO_ACCOUNT_PLACES' zone and currency (another
        workspace's own), with 8 campaigns."""
        zone, currency = DEMO_ACCOUNT_PLACES.get(
            workspace.id, (workspace.timezone, workspace.reporting_currency)
        )
        options = {"time_zone": zone, "currency": currency, "name": name, "campaigns": 8}
        return self.add_account(account_id, **options)

    def account(self, account_id: str) -> AdAccount | None:
        """The account, or None when the platform has none by that id (its own 404)."""
        return self.accounts.get(account_id)
