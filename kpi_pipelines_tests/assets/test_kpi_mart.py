"""The KPI mart, materialized by Dagster for a workspace partition on the real warehouse:
one row per day and one column per metric of every provider, overrides applied, written to
kpi_mart (isolated per workspace), read back by `read_kpis`, with its anomaly checks."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

import kpi_pipelines
from kpi_pipelines import demo
from kpi_pipelines.assets.kpi_mart import LATEST_COLUMNS, LISTED, NO_MISSING_DAYS, NO_SHARP_DROPS
from kpi_pipelines.automation.partitions import register_partition
from kpi_pipelines.definitions import defs
from kpi_pipelines.models import MAX_METRIC_CHARS, KPIData, day_timestamp
from kpi_pipelines.warehouse.mart import MAX_CELLS, MartTooLarge
from kpi_pipelines.warehouse.tenant_data import set_override
from kpi_pipelines.warehouse.writer import write_kpis
from kpi_pipelines_tests.canary import scanned_instance
from kpi_pipelines_tests.run_results import failure_message, metadata

TODAY = datetime.now(UTC).date()
DAYS = [TODAY - timedelta(days=n) for n in range(5, 0, -1)]  # five days up to yesterday


def store(warehouse, workspace: str, source: str, metric: str, values: dict[date, float]) -> None:
    store_many(warehouse, workspace, source, {metric: values})


def store_many(
    warehouse, workspace: str, source: str, metrics: dict[str, dict[date, float]]
) -> None:
    points = [
        KPIData(
            value=v,
            timestamp=day_timestamp(d),
            source=source,
            workspace_id=workspace,
            metric=metric,
            metadata={"granularity": "day"},
        )
        for metric, values in metrics.items()
        for d, v in values.items()
    ]
    with warehouse.tenant(workspace, actor="test") as db:
        write_kpis(db, points, fetched_at=datetime.now(UTC))


def materialize_mart(instance, workspace: str, **config) -> dg.ExecuteInProcessResult:
    return demo.materialize_mart(instance, workspace, config)


@pytest.fixture
def business(warehouse, workspace_a, workspace_b):
    # Stripe: MRR falls 60% on the last day; GA4: sessions skip a day; two providers
    # report `revenue`; a CSV metric (manual: never expected every day)
    store(
        warehouse, "ws-a", "stripe", "mrr", dict(zip(DAYS, [100, 110, 120, 125, 50], strict=True))
    )
    store(warehouse, "ws-a", "stripe", "revenue", {DAYS[0]: 30.0, DAYS[4]: 40.0})
    sessions = {d: 1_000.0 + i for i, d in enumerate(DAYS) if i != 2}
    store(warehouse, "ws-a", "google_analytics", "sessions", sessions)
    store(warehouse, "ws-a", "csv_upload", "revenue", {DAYS[1]: 7.0})
    store(warehouse, "ws-b", "stripe", "mrr", {DAYS[0]: 999.0})
    override = KPIData(
        value=115.0,
        timestamp=day_timestamp(DAYS[1]),
        source="stripe",
        workspace_id="ws-a",
        metric="mrr",
    )
    set_override(warehouse, override, user="ana", reason="a refund Stripe missed")
    return warehouse


def test_the_mart_is_a_day_per_row_and_a_metric_per_column(business) -> None:
    with scanned_instance() as instance:
        result = materialize_mart(instance, "ws-a")
    assert result.success
    [materialization] = result.asset_materializations_for_node("kpi_mart")
    assert materialization.metadata["rows"].value == 5
    frame = kpi_pipelines.read_kpis("ws-a", warehouse=business)
    assert list(frame.index) == DAYS
    assert sorted(frame.columns) == ["csv_upload.revenue", "mrr", "sessions", "stripe.revenue"]
    assert list(frame["mrr"]) == [100.0, 115.0, 120.0, 125.0, 50.0]  # the override stands
    assert frame["sessions"].isna().tolist() == [False, False, True, False, False]
    with business.tenant("ws-a", actor="test") as db:
        stored = {
            r.day: r.metrics
            for r in db.execute(sa.text("SELECT day, metrics FROM kpi_mart ORDER BY day"))
        }
    assert stored[DAYS[1]] == {
        "mrr": 115.0,
        "sessions": 1_001.0,
        "csv_upload.revenue": 7.0,
    }
    # another workspace's mart is its own (row-level security)
    with business.tenant("ws-b", actor="test") as db:
        assert db.execute(sa.text("SELECT count(*) FROM kpi_mart")).scalar() == 0
    narrowed = kpi_pipelines.read_kpis(
        "ws-a", metrics=["mrr"], start=DAYS[3], end=DAYS[4], warehouse=business
    )
    assert list(narrowed.columns) == ["mrr"] and list(narrowed["mrr"]) == [125.0, 50.0]
    assert isinstance(narrowed, pd.DataFrame)


def test_anomaly_checks_say_which_metric_fell_and_which_days_are_missing(business) -> None:
    with scanned_instance() as instance:
        result = materialize_mart(instance, "ws-a")
        checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
        assert not checks[NO_SHARP_DROPS].passed
        drops = checks[NO_SHARP_DROPS].metadata["drops"].value
        assert drops == {
            "mrr": {"day": DAYS[4].isoformat(), "before": 125.0, "after": 50.0, "fell_by": 0.6}
        }
        assert not checks[NO_MISSING_DAYS].passed
        missing = checks[NO_MISSING_DAYS].metadata["missing_days"].value
        assert missing == {"google_analytics": {"count": 1, "days": [DAYS[2].isoformat()]}}
        # a 70% threshold lets a 60% fall pass
        relaxed = materialize_mart(instance, "ws-a", drop_share=0.7)
        checks = {e.check_name: e for e in relaxed.get_asset_check_evaluations()}
        assert checks[NO_SHARP_DROPS].passed


def test_a_day_still_going_on_in_the_workspace_is_no_sharp_drop(warehouse, workspace_b) -> None:
    # Hourly providers (GA4) have a few hours of the workspace's today: far below a whole
    # day, which is no fall. Its today in Europe/Berlin may already be tomorrow in UTC.
    today = datetime.now(ZoneInfo(workspace_b.timezone)).date()
    days = [today - timedelta(days=n) for n in range(4, -1, -1)]
    store(warehouse, "ws-b", "google_analytics", "sessions", dict.fromkeys(days[:-1], 1_000.0))
    store(warehouse, "ws-b", "google_analytics", "sessions", {today: 12.0})
    with scanned_instance() as instance:
        result = materialize_mart(instance, "ws-b")
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks[NO_SHARP_DROPS].passed, checks[NO_SHARP_DROPS].metadata["drops"].value
    assert checks[NO_MISSING_DAYS].passed, checks[NO_MISSING_DAYS].metadata["missing_days"]


# What one event's metadata may take, serialized, whatever the number of metrics: the first
# LISTED names (of at most 63 characters) or drops, a few counts, a table of a few columns.
METADATA_BYTES = 32 * 1024


def test_thousands_of_metrics_make_the_whole_mart_and_bounded_metadata(
    warehouse, workspace_a
) -> None:
    # Metric names as long as a key may be, so the metadata is as large as it can get; metric
    # i falls by i/count on the last day: those past a half are sharp drops.
    count = 3_000
    names = [f"m{i:05d}_".ljust(MAX_METRIC_CHARS, "x") for i in range(count)]
    before, last = DAYS[-2], DAYS[-1]
    store_many(
        warehouse,
        "ws-a",
        "stripe",
        {name: {before: 100.0, last: 100.0 * (1 - i / count)} for i, name in enumerate(names)},
    )
    # a scheduled provider whose first day is decades back: its missing days are counted
    first_ga_day = date(2000, 1, 1)
    store(warehouse, "ws-a", "google_analytics", "sessions", {first_ga_day: 1.0, last: 1.0})
    with scanned_instance() as instance:
        result = materialize_mart(instance, "ws-a")
    assert result.success
    [materialization] = result.asset_materializations_for_node("kpi_mart")
    summary = metadata(result)
    assert summary["rows"] == 3
    assert summary["metric_count"] == count + 1
    assert summary["metrics"] == names[:LISTED]
    assert summary["metrics_not_listed"] == count + 1 - LISTED
    assert f"({count + 1 - LATEST_COLUMNS:,} more metrics not shown)" in summary["latest"]

    with warehouse.tenant("ws-a", actor="test") as db:
        stored = {
            r.day: r.metrics
            for r in db.execute(sa.text("SELECT day, metrics FROM kpi_mart ORDER BY day"))
        }
    assert list(stored) == [first_ga_day, before, last]
    assert stored[first_ga_day] == {"sessions": 1.0}
    assert stored[before] == dict.fromkeys(names, 100.0)
    assert stored[last] == {
        "sessions": 1.0,
        **{name: 100.0 * (1 - i / count) for i, name in enumerate(names)},
    }
    frame = kpi_pipelines.read_kpis("ws-a", warehouse=warehouse)
    assert frame.shape == (3, count + 1) and not frame.attrs
    assert frame.loc[last, names[-1]] == stored[last][names[-1]]

    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    drops = checks[NO_SHARP_DROPS].metadata
    assert drops["drop_count"].value == count // 2 - 1  # i/count > 0.5
    assert drops["drops_not_listed"].value == count // 2 - 1 - LISTED
    # the steepest falls are the ones listed, steepest first
    assert list(drops["drops"].value) == names[::-1][:LISTED]
    assert drops["drops"].value[names[-1]] == {
        "day": last.isoformat(),
        "before": 100.0,
        "after": 100.0 * (1 - (count - 1) / count),
        "fell_by": round((count - 1) / count, 4),
    }
    missing = checks[NO_MISSING_DAYS].metadata["missing_days"].value
    gap_days = [first_ga_day + timedelta(days=n) for n in range(1, 32)]
    assert missing == {
        "google_analytics": {
            "count": (last - first_ga_day).days - 1,
            "days": [d.isoformat() for d in gap_days],
        }
    }
    for reported in (
        materialization.metadata,
        checks[NO_SHARP_DROPS].metadata,
        checks[NO_MISSING_DAYS].metadata,
    ):
        assert len(dg.serialize_value(reported)) < METADATA_BYTES


def test_metrics_each_on_a_day_of_their_own_fail_the_mart_and_keep_the_last_one(
    business,
) -> None:
    # A CSV of a few thousand rows, each a metric of its own on a day of its own, would make
    # the dense day x metric table the square of its points (here 4,505 x 4,504).
    count = 4_500
    with scanned_instance() as instance:
        assert materialize_mart(instance, "ws-a").success
        spread = {f"spread_{i:05d}": {TODAY - timedelta(days=10 + i): 1.0} for i in range(count)}
        store_many(business, "ws-a", "csv_upload", spread)
        result = materialize_mart(instance, "ws-a")
    assert not result.success
    cells = (count + len(DAYS)) * (count + 4)
    assert cells > MAX_CELLS
    assert f"{cells:,} cells, over the limit of {MAX_CELLS:,}" in failure_message(result)
    with business.tenant("ws-a", actor="test") as db:
        kept = db.execute(sa.text("SELECT day FROM kpi_mart ORDER BY day")).scalars().all()
    assert kept == DAYS
    with pytest.raises(MartTooLarge, match="read_kpis reads less with metrics, start and end"):
        kpi_pipelines.read_kpis("ws-a", warehouse=business)
    narrowed = kpi_pipelines.read_kpis("ws-a", metrics=["mrr", "spread_00000"], warehouse=business)
    assert narrowed.shape == (len(DAYS) + 1, 2)


def test_the_mart_is_downstream_of_every_provider() -> None:
    graph = defs.resolve_asset_graph()
    parents = {key.to_user_string() for key in graph.get(dg.AssetKey("kpi_mart")).parent_keys}
    assert parents == {
        key.to_user_string()
        for key in graph.get_all_asset_keys()
        if key.to_user_string().endswith("_kpis")
    }


def test_the_mart_is_rebuilt_daily_for_every_workspace() -> None:
    schedule = defs.resolve_schedule_def("kpi_mart_schedule")
    assert schedule.cron_schedule == "0 4 * * *"
    with scanned_instance() as instance:
        for ws in ("ws-a", "ws-b"):
            register_partition(instance, ws)
        at = datetime(2026, 6, 2, 4, tzinfo=UTC)
        with dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=at,
            repository_def=defs.get_repository_def(),
        ) as ctx:
            requests = schedule.evaluate_tick(ctx).run_requests
    assert [(r.partition_key, r.run_key) for r in requests] == [
        ("ws-a", "ws-a:2026-06-02"),
        ("ws-b", "ws-b:2026-06-02"),
    ]


def test_a_partition_without_a_workspace_fails_with_the_command_that_fixes_it(warehouse) -> None:
    """A partition added with "Add partition" in the UI for a workspace nobody made: its
    mart fails saying how to make it, and once made as it says, the mart builds."""
    with scanned_instance() as instance:
        failed = materialize_mart(instance, "ghost-co")
        assert not failed.success
        command = "kpi-pipelines workspace add ghost-co --currency USD --timezone UTC"
        assert f"`{command}`" in failure_message(failed)
        kpi_pipelines.warehouse.control.add_workspace(
            warehouse, kpi_pipelines.warehouse.control.Workspace(id="ghost-co", name="ghost-co")
        )
        assert materialize_mart(instance, "ghost-co").success
