"""The KPI mart, materialized by Dagster for a workspace partition on the real warehouse:
one row per day with every provider's totals and their breakdowns, overrides applied,
written to kpi_mart (isolated per workspace), read back by `read_kpis`, with its anomaly
checks, one result per workspace."""

import json
import sys
import warnings
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

import kpi_pipelines
from kpi_pipelines import demo
from kpi_pipelines.assets.kpi_mart import (
    LATEST_COLUMNS,
    LISTED,
    MART_KEY,
    NO_MISSING_DAYS,
    NO_SHARP_DROPS,
)
from kpi_pipelines.automation.partitions import register_partition
from kpi_pipelines.definitions import RESOURCES, SPECS, defs
from kpi_pipelines.demo import DEMO_WORKSPACES
from kpi_pipelines.models import MAX_METRIC_CHARS, KPIData, day_timestamp
from kpi_pipelines.warehouse import mart
from kpi_pipelines.warehouse.control import UnknownWorkspace
from kpi_pipelines.warehouse.mart import (
    MAX_BREAKDOWNS,
    MAX_CELLS,
    MartTooLarge,
    MissingKPIWarning,
)
from kpi_pipelines.warehouse.tenant_data import set_override
from kpi_pipelines.warehouse.writer import write_kpis
from kpi_pipelines_tests.canary import scanned_instance
from kpi_pipelines_tests.processes import run_cli, run_process
from kpi_pipelines_tests.run_results import failure_message, latest_check_records, metadata

TODAY = datetime.now(UTC).date()
DAYS = [TODAY - timedelta(days=n) for n in range(5, 0, -1)]  # five days up to yesterday


def store(warehouse, workspace: str, source: str, metric: str, values: dict[date, float]) -> None:
    store_many(warehouse, workspace, source, {metric: values})


def store_many(
    warehouse,
    workspace: str,
    source: str,
    metrics: dict[str, dict[date, float]],
    dimensions: dict[str, str] | None = None,
) -> None:
    points = [
        KPIData(
            value=v,
            timestamp=day_timestamp(d),
            source=source,
            workspace_id=workspace,
            metric=metric,
            dimensions=dimensions or {},
            metadata={"granularity": "day"},
        )
        for metric, values in metrics.items()
        for d, v in values.items()
    ]
    with warehouse.tenant(workspace, actor="test") as db:
        write_kpis(db, points, fetched_at=datetime.now(UTC))


def store_breakdown(
    warehouse, workspace: str, source: str, metric: str, dimensions: dict, values: dict
) -> None:
    store_many(warehouse, workspace, source, {metric: values}, dimensions)


def mart_rows(warehouse, workspace: str) -> dict[date, tuple[dict, dict]]:
    with warehouse.tenant(workspace, actor="test") as db:
        return {
            r.day: (r.metrics, r.breakdowns)
            for r in db.execute(sa.text("SELECT day, metrics, breakdowns FROM kpi_mart"))
        }


def evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


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
    stored = mart_rows(business, "ws-a")
    assert stored[DAYS[1]] == (
        {"mrr": 115.0, "sessions": 1_001.0, "csv_upload.revenue": 7.0},
        {},  # no breakdowns here
    )
    # another workspace's mart is its own (row-level security)
    with business.tenant("ws-b", actor="test") as db:
        assert db.execute(sa.text("SELECT count(*) FROM kpi_mart")).scalar() == 0
    narrowed = kpi_pipelines.read_kpis(
        "ws-a", metrics=["mrr"], start=DAYS[3], end=DAYS[4], warehouse=business
    )
    assert list(narrowed.columns) == ["mrr"] and list(narrowed["mrr"]) == [125.0, 50.0]
    assert isinstance(narrowed, pd.DataFrame)


def test_breakdowns_sit_beside_their_totals_in_the_mart_and_in_read_kpis(
    warehouse, workspace_a
) -> None:
    # GA4's sessions: a total and a breakdown by channel, which do not add up to it (a
    # session can count in two channels); signups: only breakdowns, by Team from a CSV and
    # by Channel from a sheet, and on DAYS[0] nothing but breakdowns.
    day = DAYS[-1]
    store(warehouse, "ws-a", "google_analytics", "sessions", {day: 100.0})
    for channel, value in (("Email", 40.0), ("Direct", 70.0)):
        store_breakdown(
            warehouse, "ws-a", "google_analytics", "sessions", {"channel": channel}, {day: value}
        )
    for team, value in (("support", 7.0), ("growth", 5.0)):
        store_breakdown(
            warehouse, "ws-a", "csv_upload", "signups", {"Team": team}, {DAYS[0]: 1.0, day: value}
        )
    store_breakdown(
        warehouse, "ws-a", "google_sheets", "signups", {"Channel": "webinar"}, {day: 3.0}
    )
    with scanned_instance() as instance:
        result = materialize_mart(instance, "ws-a")
    assert result.success
    summary = metadata(result)
    assert summary["rows"] == 2
    assert summary["breakdown_metric_count"] == 3
    assert summary["breakdown_values"] == 7
    assert summary["breakdowns_left_out_count"] == 0
    stored = mart_rows(warehouse, "ws-a")
    assert stored[day] == (
        {"sessions": 100.0},  # the provider's own total, not 110
        {
            "sessions": [
                {"dimensions": {"channel": "Direct"}, "value": 70.0},
                {"dimensions": {"channel": "Email"}, "value": 40.0},
            ],
            "csv_upload.signups": [
                {"dimensions": {"Team": "growth"}, "value": 5.0},
                {"dimensions": {"Team": "support"}, "value": 7.0},
            ],
            "google_sheets.signups": [{"dimensions": {"Channel": "webinar"}, "value": 3.0}],
        },
    )
    assert stored[DAYS[0]] == (
        {},
        {
            "csv_upload.signups": [
                {"dimensions": {"Team": "growth"}, "value": 1.0},
                {"dimensions": {"Team": "support"}, "value": 1.0},
            ]
        },
    )

    # read_kpis: totals by default, and says why a metric asked for has no column
    with pytest.warns(MissingKPIWarning) as warned:
        totals = kpi_pipelines.read_kpis("ws-a", metrics=["signups"], warehouse=warehouse)
    assert totals.empty
    assert str(warned[0].message) == (
        "read_kpis('ws-a'): signups has no total, only breakdowns by Team (csv_upload),"
        " breakdowns by Channel (google_sheets): read_kpis(..., by='Team') reads them"
    )
    # by="channel": the total keeps its column, each breakdown gets one beside it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        channels = kpi_pipelines.read_kpis(
            "ws-a", metrics=["sessions"], start=day, by="channel", warehouse=warehouse
        )
    assert list(channels.index) == [day]
    assert channels.iloc[0].to_dict() == {
        "sessions": 100.0,
        "sessions[channel=Direct]": 70.0,
        "sessions[channel=Email]": 40.0,
    }
    # named as in the mart; a metric without that breakdown keeps its total and is named
    with pytest.warns(MissingKPIWarning) as warned:
        teams = kpi_pipelines.read_kpis(
            "ws-a", metrics=["signups", "sessions", "churn"], by=["Team"], warehouse=warehouse
        )
    assert sorted(teams.columns) == [
        "csv_upload.signups[Team=growth]",
        "csv_upload.signups[Team=support]",
        "sessions",
    ]
    assert teams.loc[day, "csv_upload.signups[Team=support]"] == 7.0
    assert str(warned[0].message) == (
        "read_kpis('ws-a'): sessions has no breakdown by Team, only a total"
        " (google_analytics), breakdowns by channel (google_analytics); churn has no point"
    )
    with pytest.raises(UnknownWorkspace, match="'ws-typo' does not exist"):
        kpi_pipelines.read_kpis("ws-typo", warehouse=warehouse)
    with pytest.raises(ValueError, match="names a dimension twice"):
        kpi_pipelines.read_kpis("ws-a", by=["Team", "Team"], warehouse=warehouse)


def test_the_mart_leaves_out_whole_a_metric_with_more_breakdowns_than_a_chart_shows(
    warehouse, workspace_a, monkeypatch
) -> None:
    # a CSV broken down by customer id: more breakdowns than any chart shows
    day = DAYS[-1]
    customers = MAX_BREAKDOWNS + 20
    points = [
        KPIData(
            value=1.0,
            timestamp=day_timestamp(day),
            source="csv_upload",
            workspace_id="ws-a",
            metric="orders",
            dimensions={"customer": f"cus_{n:04d}"},
        )
        for n in range(customers)
    ]
    with warehouse.tenant("ws-a", actor="test") as db:
        write_kpis(db, points, fetched_at=datetime.now(UTC))
    store_breakdown(warehouse, "ws-a", "csv_upload", "refunds", {"reason": "fraud"}, {day: 2.0})
    store_breakdown(warehouse, "ws-a", "csv_upload", "signups", {"Team": "growth"}, {day: 3.0})
    with scanned_instance() as instance:
        assert materialize_mart(instance, "ws-a").success
        assert mart_rows(warehouse, "ws-a")[day][1] == {
            "refunds": [{"dimensions": {"reason": "fraud"}, "value": 2.0}],
            "signups": [{"dimensions": {"Team": "growth"}, "value": 3.0}],
        }
        summary = metadata(materialize_mart(instance, "ws-a"))
        assert summary["breakdowns_left_out"] == {
            "orders": f"{customers} breakdowns, over {MAX_BREAKDOWNS}"
        }
        # and at most MAX_BREAKDOWN_POINTS values in all: the metrics past it (in name
        # order) are left out whole, never cut
        monkeypatch.setattr(mart, "MAX_BREAKDOWN_POINTS", 1)
        summary = metadata(materialize_mart(instance, "ws-a"))
    assert mart_rows(warehouse, "ws-a")[day][1] == {
        "refunds": [{"dimensions": {"reason": "fraud"}, "value": 2.0}],
    }
    assert summary["breakdowns_left_out"] == {
        "orders": f"{customers} breakdowns, over {MAX_BREAKDOWNS}",
        "signups": "past 1 breakdown values in all",
    }
    assert summary["breakdown_values"] == 1


def test_anomaly_checks_say_which_workspace_metric_and_days(business) -> None:
    # Stripe's revenue is a day's flow: falling by 90% is an ordinary day, not a drop; its
    # ARPA (a level) fell by 60% since its previous value, but that was two days before.
    store(business, "ws-a", "stripe", "net_revenue", {DAYS[3]: 1_000.0, DAYS[4]: 100.0})
    store(business, "ws-a", "stripe", "arpa", {DAYS[2]: 50.0, DAYS[4]: 20.0})
    with scanned_instance() as instance:
        result = materialize_mart(instance, "ws-a")
        checks = evaluations(result)
        drops = checks[NO_SHARP_DROPS]
        assert not drops.passed and drops.partition == "ws-a"
        assert drops.metadata["drops"].value == {
            "mrr": {
                "day": DAYS[4].isoformat(),
                "day_before": DAYS[3].isoformat(),
                "before": 125.0,
                "after": 50.0,
                "fell_by": 0.6,
            }
        }
        assert drops.description == (
            f"ws-a: mrr fell 60% on {DAYS[4]}, from 125.00 the day before to 50.00; over the"
            " 50% allowed"
        )
        assert drops.metadata["drop_count"].value == 1
        # what would plot as a flat line is text
        assert drops.metadata["threshold"].value == "50% in a day"
        assert drops.metadata["metrics_watched"].value == "2"  # mrr, arpa
        gaps = checks[NO_MISSING_DAYS]
        assert not gaps.passed and gaps.partition == "ws-a"
        missing = gaps.metadata["missing_days"].value
        assert missing == {"google_analytics": {"count": 1, "days": [DAYS[2].isoformat()]}}
        assert gaps.description == (
            f"ws-a: google_analytics has no value on 1 day(s) since its first: {DAYS[2]}"
        )
        # a 70% threshold lets a 60% fall pass; a metric named in `watch` is watched too
        relaxed = evaluations(materialize_mart(instance, "ws-a", drop_share=0.7))
        assert relaxed[NO_SHARP_DROPS].passed
        assert relaxed[NO_SHARP_DROPS].description == (
            f"ws-a: none of the 2 watched metrics (arpa, mrr) fell by more than 70% from one"
            f" day to the next, up to {DAYS[4]}"
        )
        watched = evaluations(
            materialize_mart(instance, "ws-a", drop_share=0.7, watch=["net_revenue"])
        )
        assert list(watched[NO_SHARP_DROPS].metadata["drops"].value) == ["net_revenue"]


def test_each_workspace_gets_its_own_check_results_in_the_instance(business, workspace_b) -> None:
    """Through the mart's own job, one partition per run: the instance keeps the latest
    evaluation of each check per workspace, which is what the UI shows per partition."""
    # up to yesterday in ws-b's own time zone (Berlin's date runs ahead of UTC's at night)
    berlin_today = datetime.now(ZoneInfo("Europe/Berlin")).date()
    berlin_days = [berlin_today - timedelta(days=n) for n in range(5, 0, -1)]
    store(business, "ws-b", "stripe", "mrr", dict.fromkeys(berlin_days, 1_000.0))
    job = defs.resolve_job_def("kpi_mart_job")
    with scanned_instance() as instance:
        for workspace in ("ws-a", "ws-b"):
            register_partition(instance, workspace)
            result = job.execute_in_process(
                instance=instance, resources=RESOURCES, partition_key=workspace
            )
            assert result.success
        drops = latest_check_records(instance, dg.AssetCheckKey(MART_KEY, NO_SHARP_DROPS))
        gaps = latest_check_records(instance, dg.AssetCheckKey(MART_KEY, NO_MISSING_DAYS))
    assert {p: r.status.value for p, r in drops.items()} == {"ws-a": "FAILED", "ws-b": "SUCCEEDED"}
    assert {p: r.status.value for p, r in gaps.items()} == {"ws-a": "FAILED", "ws-b": "SUCCEEDED"}
    assert drops["ws-a"].evaluation.description.startswith("ws-a: mrr fell 60%")
    assert drops["ws-b"].evaluation.description.startswith("ws-b: none of the 1 watched")


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
# and a check's description: a few names (of at most 63 characters) and counts
DESCRIPTION_CHARS = 1_000


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
        result = materialize_mart(instance, "ws-a", watch=["*"])
    assert result.success
    [materialization] = result.asset_materializations_for_node("kpi_mart")
    summary = metadata(result)
    assert summary["rows"] == 3
    assert summary["metric_count"] == count + 1
    assert summary["metrics"] == names[:LISTED]
    assert summary["metrics_not_listed"] == count + 1 - LISTED
    assert f"({count + 1 - LATEST_COLUMNS:,} more metrics not shown)" in summary["latest"]

    stored = {day: totals for day, (totals, _) in sorted(mart_rows(warehouse, "ws-a").items())}
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

    checks = evaluations(result)
    drops = checks[NO_SHARP_DROPS].metadata
    assert drops["drop_count"].value == count // 2 - 1  # i/count > 0.5
    assert drops["metrics_watched"].value == f"{count + 1:,}"
    # the steepest falls are the ones listed, steepest first; the description names three
    assert list(drops["drops"].value) == names[::-1][:LISTED]
    assert drops["drops"].value[names[-1]] == {
        "day": last.isoformat(),
        "day_before": before.isoformat(),
        "before": 100.0,
        "after": 100.0 * (1 - (count - 1) / count),
        "fell_by": round((count - 1) / count, 4),
    }
    description = checks[NO_SHARP_DROPS].description
    assert description.startswith(f"ws-a: {names[-1]} fell 100% on {last}")
    assert f"and {count // 2 - 1 - 3:,} more (drops lists the steepest)" in description
    missing = checks[NO_MISSING_DAYS].metadata["missing_days"].value
    gap_days = [first_ga_day + timedelta(days=n) for n in range(1, 32)]
    assert missing == {
        "google_analytics": {
            "count": (last - first_ga_day).days - 1,
            "days": [d.isoformat() for d in gap_days],
        }
    }
    assert checks[NO_MISSING_DAYS].description == (
        f"ws-a: google_analytics has no value on {(last - first_ga_day).days - 1:,} day(s)"
        f" since its first: {gap_days[0]}, {gap_days[1]}, {gap_days[2]} and"
        f" {(last - first_ga_day).days - 4:,} more"
    )
    for reported in (
        materialization.metadata,
        checks[NO_SHARP_DROPS].metadata,
        checks[NO_MISSING_DAYS].metadata,
    ):
        assert len(dg.serialize_value(reported)) < METADATA_BYTES
    for check in checks.values():
        assert len(check.description) < DESCRIPTION_CHARS


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


# Every check's latest evaluation per partition, read from the instance of the KPI_HOME the
# environment names (in a process of its own: that home's embedded server and Dagster home).
CHECK_RECORDS = """
import json
from kpi_pipelines.dagster_instance import open_instance
from kpi_pipelines.definitions import defs
from kpi_pipelines_tests.run_results import latest_check_records

instance = open_instance()
found = []
for key in sorted(defs.resolve_asset_graph().asset_check_keys, key=str):
    for partition, record in latest_check_records(instance, key).items():
        evaluation = record.evaluation
        found.append({
            "check": key.to_user_string(),
            "partition": partition,
            "status": record.status.value,
            "description": evaluation.description if evaluation else None,
        })
print(json.dumps(found))
"""


def test_the_demo_trips_no_check_and_each_names_its_workspace(private_home) -> None:
    """The quick start's demo, as a newcomer runs it: every check it evaluates passes on its
    own data, and the mart's checks have one result per demo workspace, naming it."""
    env = private_home
    run_cli(env, "demo")
    records = json.loads(run_process([sys.executable, "-c", CHECK_RECORDS], env).stdout)
    failed = [r for r in records if r["status"] != "SUCCEEDED"]
    assert not failed, failed
    workspaces = [w.id for w in DEMO_WORKSPACES]
    for check in (NO_SHARP_DROPS, NO_MISSING_DAYS):
        mart_checks = {
            r["partition"]: r["description"]
            for r in records
            if r["check"] == f"{MART_KEY.to_user_string()}:{check}"
        }
        assert sorted(mart_checks) == sorted(workspaces)
        for workspace, description in mart_checks.items():
            assert description.startswith(f"{workspace}: "), description
    checked = {r["check"] for r in records}
    for spec in SPECS:
        if spec.cadence:
            assert f"{spec.asset_key.to_user_string()}:fresh_for_every_workspace" in checked


def test_a_workspace_without_points_gets_an_empty_mart_and_checks_that_say_so(
    warehouse, workspace_a
) -> None:
    with scanned_instance() as instance:
        result = materialize_mart(instance, "ws-a", watch=["*"])
    assert result.success and metadata(result)["rows"] == 0
    checks = evaluations(result)
    assert checks[NO_SHARP_DROPS].passed and checks[NO_MISSING_DAYS].passed
    assert checks[NO_SHARP_DROPS].description.startswith("ws-a: no metric watched")


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
