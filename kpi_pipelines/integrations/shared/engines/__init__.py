"""The sync engines: how a provider syncs, written once, run over each provider's hooks.

A provider's spec names its engine with that engine's reports or streams; its adapter
subclasses the engine's adapter class and implements the hooks (how to fetch a page,
validate a record, turn a record into points, the provider's quirks). The engines:

- `ReportEngine` (report.py): date-windowed reports in the account's time zone, a cursor
  and a lookback per report, requests cut to the provider's limits (days, ids, metrics),
  async jobs split when they fail (report_jobs.py), entity streams that name the points,
  quota stops that resume (GA4, the ad platforms).
- `ObjectEngine` (objects.py): objects landed raw in raw_records with an incremental cursor,
  metrics computed in SQL over the landed records (Stripe; Notion, HubSpot, Salesforce next).
- `TableEngine` (table.py): a user's table (a CSV file, a sheet) validated whole and
  written all-or-nothing.

An engine syncs one connected workspace per call; a run over several workspaces calls it
once for each (see assets/provider_asset.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from kpi_pipelines.models import SyncResult


class Engine(ABC):
    """One way to sync, declared in a provider's spec."""

    kind: ClassVar[str]  # "report", "object", "table": shown in the UI and the README

    @property
    @abstractmethod
    def hooks(self) -> type[Any]:
        """The adapter class whose hooks this engine calls (the provider's adapter
        subclasses it)."""

    @abstractmethod
    def sync(self, adapter: Any) -> SyncResult:
        """Sync the workspace `adapter` is connected to."""

    def describe(self) -> str:
        """One line for the UI and the README: the engine and what it reads."""
        return self.kind

    def check(self, adapter: type[Any]) -> None:
        """Raise TypeError when `adapter` lacks a hook this declaration needs (checked when
        the spec is made, so a provider missing one fails at import, not mid-sync)."""
        return None
