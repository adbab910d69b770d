"""X Ads as Definitions run it (every 6 hours, one run per connected workspace, in X's pool,
3 days re-read) and its demo: both demo workspaces synced from the simulator, in their own
time zones, their ad metrics in the KPI mart beside the other providers'."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg

from kpi_pipelines.definitions import defs
from kpi_pipelines.demo import (
    DEMO_WORKSPACES,
    ensure_workspaces,
    materialize_mart,
    materialize_provider,
)
from kpi_pipelines.integrations.shared.ad_metrics import AD_METRICS
from kpi_pipelines.integrations.x_ads.spec import SPEC, STATS
from kpi_pipelines.resources import WarehouseResource
from kpi_pipelines.sandbox.kit.ads.sandbox import DEMO_ACCOUNT_PLACES
from kpi_pipelines.sandbox.x import demo
from kpi_pipelines.warehouse.mart import read_kpis
from kpi_pipelines.warehouse.tenant_data import read_points
from kpi_pipelines_tests.integrations.x_ads.conftest import XAdsWorld
from kpi_pipelines_tests.run_results import failure_message, ticked_workspaces


def test_every_6_hours_runs_over_the_connected_workspaces_in_xs_pool(x: XAdsWorld) -> None:
    x.account("18ce54d4x5t")
    x.account("otheracct")
    x.connect("ws-a", "18ce54d4x5t")
    x.connect("ws-b", "otheracct")
    schedule = defs.resolve_schedule_def("x_ads_schedule")
    assert schedule.cron_schedule == "20 */6 * * *"
    assert SPEC.cadence is not None and SPEC.cadence.interval == timedelta(hours=6)
    with dg.build_schedule_context(
        instance=x.instance,
        scheduled_execution_time=datetime(2026, 11, 20, 12, 20, tzinfo=UTC),
        resources={"warehouse": WarehouseResource()},
        repository_def=defs.get_repository_def(),
    ) as context:
        ticked = schedule.evaluate_tick(context)
    assert ticked_workspaces(x.instance, "x_ads", ticked.run_requests) == ["ws-a", "ws-b"]
    assert (SPEC.pool, SPEC.pool_limit) == ("x_ads", 4)
    assert defs.get_assets_def("x_ads_kpis").op.pool == "x_ads"
    assert (STATS.lookback_days, STATS.max_ids, SPEC.metrics) == (3, 20, AD_METRICS)


def test_both_demo_workspaces_sync_from_the_simulator_into_the_mart(
    warehouse, dagster_instance, monkeypatch, tmp_path: Path
) -> None:
    simulator = demo.start_simulator(DEMO_WORKSPACES, tmp_path)
    try:
        for name, value in simulator.env().items():
            monkeypatch.setenv(name, value)
        ensure_workspaces(warehouse)
        for workspace in DEMO_WORKSPACES:
            demo.prepare(warehouse, workspace, tmp_path)
            synced = materialize_provider(warehouse, dagster_instance, "x_ads", workspace.id)
            assert synced.success, failure_message(synced)
            zones = {
                p.metadata["time_zone"]
                for p in read_points(warehouse, workspace.id, source="x_ads")
            }
            assert zones == {DEMO_ACCOUNT_PLACES[workspace.id][0]}
        assert materialize_mart(dagster_instance, "globex").success
        mart = read_kpis("globex", warehouse=warehouse)
        columns = {column.split(".")[-1] for column in mart.columns}
        assert set(AD_METRICS) <= columns
        assert mart.filter(like="ad_spend").dropna(how="all").sum().sum() > 0
    finally:
        simulator.stop()
