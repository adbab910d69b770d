"""Meta's declaration as Definitions read it (every 4 hours, its pool, the 28-day lookback,
the catalog's ad metrics) and its demo: both demo workspaces synced from the simulator,
their ad metrics in the KPI mart beside the others."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from kpi_pipelines.definitions import defs
from kpi_pipelines.demo import (
    DEMO_WORKSPACES,
    ensure_workspaces,
    materialize_mart,
    materialize_provider,
)
from kpi_pipelines.integrations.meta_ads.spec import SPEC
from kpi_pipelines.integrations.shared.ad_metrics import AD_METRICS
from kpi_pipelines.sandbox.meta import demo
from kpi_pipelines.warehouse.mart import read_kpis
from kpi_pipelines_tests.run_results import failure_message


def test_every_4_hours_in_metas_pool_re_reading_28_days() -> None:
    schedule = defs.resolve_schedule_def("meta_ads_schedule")
    assert schedule.cron_schedule == "25 */4 * * *"
    assert SPEC.cadence is not None and SPEC.cadence.interval == timedelta(hours=4)
    assert (SPEC.pool, SPEC.pool_limit) == ("meta_ads", 3)
    assert all(report.lookback_days == 28 for report in SPEC.engine.reports)  # type: ignore[union-attr]
    assert SPEC.metrics == AD_METRICS
    assert defs.get_assets_def("meta_ads_kpis").op.pool == "meta_ads"


def test_the_demo_workspaces_get_their_ads_from_the_simulator(
    warehouse, dagster_instance, monkeypatch, tmp_path: Path
) -> None:
    simulator = demo.start_simulator(DEMO_WORKSPACES, tmp_path)
    try:
        for name, value in simulator.env().items():
            monkeypatch.setenv(name, value)
        ensure_workspaces(warehouse)
        for workspace in DEMO_WORKSPACES:
            demo.prepare(warehouse, workspace, tmp_path)
            result = materialize_provider(warehouse, dagster_instance, "meta_ads", workspace.id)
            assert result.success, failure_message(result)
        assert materialize_mart(dagster_instance, "acme").success
        mart = read_kpis("acme", warehouse=warehouse)
        # Named <provider>.<metric> where another provider reports the metric too.
        assert set(AD_METRICS) <= {column.split(".")[-1] for column in mart.columns}
        assert mart.filter(like="ad_spend").dropna(how="all").sum().sum() > 0
    finally:
        simulator.stop()
