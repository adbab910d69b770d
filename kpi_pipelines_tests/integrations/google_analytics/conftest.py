"""A Google sandbox served on loopback per test, and helpers to sync GA4 through Dagster."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pytest

from kpi_pipelines.integrations.google_analytics.adapter import GoogleAnalyticsAdapter
from kpi_pipelines.sandbox.google import GA4Property
from kpi_pipelines_tests.integrations.google_sandbox import GoogleWorld


@dataclass
class GA4World(GoogleWorld):
    provider = "google_analytics"

    def property(self, property_id: str, **options: Any) -> GA4Property:
        options.setdefault("history_days", 100)
        options.setdefault("daily_sessions", 120)
        return self.sandbox.add_property(property_id, **options)

    def workspace(self, workspace_id: str, property_id: str, *, lookback_days: int = 3):
        settings = {"property_id": property_id, "lookback_days": lookback_days}
        return self.connect(workspace_id, settings)

    def sync(
        self, workspace_id: str, run_config: dict[str, Any] | None = None, **adapter: Any
    ) -> dg.ExecuteInProcessResult:
        adapter.setdefault("backoff_base_seconds", 0.01)
        return self.run(workspace_id, run_config, GoogleAnalyticsAdapter(**adapter))


@pytest.fixture
def ga4(warehouse, dagster_instance, monkeypatch) -> Iterator[GA4World]:
    with GA4World.served(warehouse, dagster_instance, monkeypatch, seed=3) as world:
        yield world
