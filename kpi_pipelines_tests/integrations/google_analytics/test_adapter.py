"""GA4 through the real pipeline: sandbox over HTTP -> OAuth -> runReport pages -> kpi_data.

Every expected number comes from the sandbox's own record of the truth (`truth_by_date`,
`truth_by_date_channel`), never from what the pipeline computed.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from kpi_pipelines.definitions import PROVIDERS
from kpi_pipelines.integrations.google_analytics.adapter import (
    GoogleAnalyticsAdapter,
    _next_hour,
    _next_pacific_midnight,
)
from kpi_pipelines.integrations.google_analytics.spec import BY_DATE, BY_DATE_CHANNEL, SPEC
from kpi_pipelines.integrations.shared.base_adapter import AdapterNotConnected, SyncContext
from kpi_pipelines.integrations.shared.engines.report import ReadTally, Window
from kpi_pipelines.integrations.shared.errors import ProviderAuthError
from kpi_pipelines.integrations.shared.validation import Rejections
from kpi_pipelines.resources import WarehouseResource
from kpi_pipelines.sandbox.google import DEMO_REFRESH_TOKEN, Fault, GA4Quota, WebMetrics
from kpi_pipelines.warehouse.control import list_connections
from kpi_pipelines.warehouse.tenant_data import read_points
from kpi_pipelines_tests.conftest import table_snapshot
from kpi_pipelines_tests.integrations.google_analytics.conftest import (
    GA4World,
)
from kpi_pipelines_tests.run_results import failure_message, metadata, ticked_workspaces

Key = tuple[str, date, str | None]  # metric, day, channel (None: the total)


def expected_points(
    by_channel: dict[tuple[date, str], WebMetrics], by_date: dict[date, WebMetrics]
) -> dict[Key, float]:
    out: dict[Key, float] = {}
    cells: list[tuple[date, str | None, WebMetrics]] = [
        (day, channel, m) for (day, channel), m in by_channel.items()
    ]
    cells += [(day, None, m) for day, m in by_date.items()]
    for day, channel, m in cells:
        out[("sessions", day, channel)] = m.sessions
        out[("total_users", day, channel)] = m.total_users
        out[("new_users", day, channel)] = m.new_users
        out[("engaged_sessions", day, channel)] = m.engaged_sessions
        out[("conversions", day, channel)] = m.key_events
        if m.sessions:
            out[("engagement_rate", day, channel)] = m.engaged_sessions / m.sessions
    return out


def stored_points(
    world: GA4World, workspace_id: str, metric: str | None = None
) -> dict[Key, float]:
    points = read_points(world.warehouse, workspace_id, source="google_analytics", metric=metric)
    out = {}
    for p in points:
        assert p.timestamp.astimezone(UTC).time() == datetime.min.time(), p
        out[(p.metric, p.timestamp.date(), p.dimensions.get("channel"))] = p.value
    return out


def truth(world: GA4World, property_id: str, start: date, end: date) -> dict[Key, float]:
    return expected_points(
        world.sandbox.truth_by_date_channel(property_id, start, end),
        world.sandbox.truth_by_date(property_id, start, end),
    )


def assert_matches(stored: dict[Key, float], expected: dict[Key, float]) -> None:
    assert stored.keys() == expected.keys()
    for key, value in expected.items():
        assert stored[key] == pytest.approx(value, rel=1e-9), key


def cursors(world: GA4World, workspace_id: str) -> dict[str, dict[str, Any]]:
    with world.warehouse.tenant(workspace_id, actor="test") as db:
        rows = db.execute(
            sa.text("SELECT stream, cursor FROM sync_state WHERE source = 'google_analytics'")
        ).all()
    return {stream: cursor for stream, cursor in rows}


def health(world: GA4World, workspace_id: str):
    with world.warehouse.control() as db:
        [connection] = list_connections(db, provider="google_analytics", workspace_id=workspace_id)
    return connection


def test_first_sync_matches_the_truth_per_day_and_channel_and_in_total(ga4) -> None:
    prop = ga4.property("1001", time_zone="America/Los_Angeles")
    ga4.workspace("ws-a", "1001")
    result = ga4.sync("ws-a")
    assert result.success, failure_message(result)
    today = prop.today()
    start = today - timedelta(days=89)  # the default history: 90 days
    expected = truth(ga4, "1001", start, today)
    stored = stored_points(ga4, "ws-a")
    assert_matches(stored, expected)

    # total_users of a day is its own report, below the sum over channels (users return
    # through several channels); the additive metrics do add up.
    below = 0
    for day in {d for _, d, _ in stored}:
        by_channel = {c: v for (m, d, c), v in stored.items() if d == day and c is not None}
        channel_users = sum(
            v for (m, d, c), v in stored.items() if m == "total_users" and d == day and c
        )
        total_users = stored[("total_users", day, None)]
        assert total_users <= channel_users
        below += total_users < channel_users
        channel_sessions = sum(
            v for (m, d, c), v in stored.items() if m == "sessions" and d == day and c
        )
        assert stored[("sessions", day, None)] == channel_sessions
        assert by_channel
    assert below > 80  # nearly every day

    [point] = [
        p
        for p in read_points(ga4.warehouse, "ws-a", metric="engagement_rate")
        if p.timestamp.date() == today - timedelta(days=5) and p.dimensions == {"channel": "Direct"}
    ]
    assert point.metadata == {
        "granularity": "day",
        "time_zone": "America/Los_Angeles",
        "property_id": "1001",
        "channel": "Direct",
    }
    assert 0 < point.value < 1  # a fraction

    md = metadata(result)
    assert md["success"] is True and md["records_rejected"] == 0
    assert (
        md["records_processed"] == len(ga4.sandbox.truth_by_date_channel("1001", start, today)) + 90
    )
    assert md["points_written"] == len(expected)
    assert cursors(ga4, "ws-a") == {
        stream: {
            "property_id": "1001",
            "synced_through": today.isoformat(),
            "time_zone": "America/Los_Angeles",
        }
        for stream in ("by_date_channel", "by_date")
    }
    # No token or secret anywhere in the warehouse.
    snapshot = repr(table_snapshot(ga4.warehouse))
    for secret in [DEMO_REFRESH_TOKEN, "GOCSPX-sandbox-secret", *ga4.sandbox.oauth.access_tokens]:
        assert secret not in snapshot


def test_later_syncs_restate_the_lookback_days_and_the_audit_log_shows_it(ga4) -> None:
    prop = ga4.property("1002", history_days=30)
    ga4.workspace("ws-a", "1002")
    assert ga4.sync("ws-a", {"history_days": 20}).success
    first_today = prop.today()
    before = stored_points(ga4, "ws-a")
    ga4.sandbox.advance(hours=10)  # GA4 processes more of today's and yesterday's sessions
    result = ga4.sync("ws-a")
    assert result.success, failure_message(result)
    today = prop.today()
    after = stored_points(ga4, "ws-a")
    assert_matches(after, truth(ga4, "1002", first_today - timedelta(days=19), today))

    # Only the cursor minus the 3-day lookback was read again.
    read_days = (today - first_today).days + 4
    assert metadata(result)["records_processed"] <= read_days * 11
    changed = {k: (before[k], v) for k, v in after.items() if k in before and before[k] != v}
    assert changed, "ten more hours of processing should restate recent days"
    assert all(day >= first_today - timedelta(days=3) for _, day, _ in changed)

    with ga4.warehouse.tenant("ws-a", actor="test") as db:
        rows = db.execute(
            sa.text(
                'SELECT metric, "timestamp", dimensions_key, old_value, new_value, actor'
                " FROM audit_log WHERE action = 'update'"
            )
        ).all()
    audited = {
        (
            r.metric,
            r.timestamp.date(),
            json.loads(r.dimensions_key)["channel"] if r.dimensions_key else None,
        ): (
            r.old_value,
            r.new_value,
        )
        for r in rows
    }
    assert len(rows) == len(audited)  # one audit row per changed value
    assert audited.keys() == changed.keys()
    for key, (old, new) in changed.items():
        assert audited[key] == pytest.approx((old, new)), key
    assert all(r.actor.startswith("run:") for r in rows)


def test_paging_reads_past_10000_rows_with_the_default_limit(ga4) -> None:
    """Three years of channel rows (over 10,000) through the adapter's reader, over HTTP.

    The adapter is connected as a run would connect it, but the rows are not written: the
    write path is the same as in every other test, and 66,000 points would only cost time.
    """
    prop = ga4.property("1003", history_days=1100, daily_sessions=150)
    workspace = ga4.workspace("ws-a", "1003")
    with ga4.warehouse.control() as db:
        [connection] = list_connections(db, provider="google_analytics", workspace_id="ws-a")
    adapter = GoogleAnalyticsAdapter()
    adapter.connect(SyncContext(ga4.warehouse, workspace, connection, run_id="paging"))
    try:
        scope = adapter.probe()
        today = scope.today
        start = today - timedelta(days=1099)
        tally = ReadTally()
        errors = tally.rejections.errors
        rows = list(SPEC.engine.rows(adapter, BY_DATE_CHANNEL, scope, Window(start, today), tally))
    finally:
        adapter.disconnect()
    expected = ga4.sandbox.truth_by_date_channel("1003", start, today)
    assert len(expected) > 10_000 and not errors
    assert {(r.day, r.channel): r.sessions for r in rows} == {
        key: m.sessions for key, m in expected.items()
    }
    assert len(rows) == len(expected)  # no row twice
    # The probe, then the report in two pages: 10,000 rows and the rest.
    assert prop.reports_served == 3


def test_small_pages_read_every_row(ga4) -> None:
    prop = ga4.property("1004", history_days=40)
    ga4.workspace("ws-a", "1004")
    result = ga4.sync("ws-a", {"history_days": 30}, page_size=37)
    assert result.success, failure_message(result)
    today = prop.today()
    start = today - timedelta(days=29)
    assert_matches(stored_points(ga4, "ws-a"), truth(ga4, "1004", start, today))
    rows = len(ga4.sandbox.truth_by_date_channel("1004", start, today))
    assert prop.reports_served == 1 + -(-rows // 37) + -(-30 // 37)


def test_concurrent_request_quota_is_retried(ga4) -> None:
    ga4.property("1005", history_days=20)
    ga4.workspace("ws-a", "1005")
    ga4.sandbox.ga4.script_quota_error("1005", "concurrent", times=3)
    result = ga4.sync("ws-a", {"history_days": 10})
    assert result.success, failure_message(result)
    assert metadata(result)["success"] is True
    assert not ga4.sandbox.ga4.property("1005").quota.scripted  # all three were met and retried


def test_hourly_quota_stops_cleanly_and_the_next_sync_resumes(ga4) -> None:
    # Four tokens: the probe and three 10-day reports; the fourth report is refused.
    prop = ga4.property("1006", history_days=40, quota=GA4Quota(tokens_per_hour=4))
    ga4.workspace("ws-a", "1006")
    today = prop.today()
    hours = [_next_hour()]
    result = ga4.sync("ws-a", {"history_days": 30}, window_days=10)
    hours.append(_next_hour())
    assert result.success, "a spent quota is not a failed run"
    md = metadata(result)
    assert md["success"] is False
    [error] = md["errors"]
    assert "Exhausted property tokens per hour" in error
    assert any(f"Retry after {at:%Y-%m-%d %H:%M:%S} UTC" in error for at in hours)
    w1_end, w2_end = today - timedelta(days=20), today - timedelta(days=10)
    assert f"by_date_channel through {w2_end}, by_date through {w1_end}" in error
    assert "the next sync resumes from there" in error

    # What was read is stored: channels for two windows, totals for one.
    stored = stored_points(ga4, "ws-a")
    assert max(d for _, d, c in stored if c is not None) == w2_end
    assert max(d for _, d, c in stored if c is None) == w1_end
    assert {k: v["synced_through"] for k, v in cursors(ga4, "ws-a").items()} == {
        "by_date_channel": w2_end.isoformat(),
        "by_date": w1_end.isoformat(),
    }
    connection = health(ga4, "ws-a")
    assert connection.consecutive_failures == 1 and "quota" in connection.last_error

    # An hour later (and with room in the quota) the next tick picks up where it stopped.
    prop.quota.tokens_per_hour = 40_000
    ga4.sandbox.advance(hours=1)
    resumed = ga4.sync("ws-a", window_days=10)
    assert resumed.success and metadata(resumed)["success"] is True
    assert metadata(resumed)["records_processed"] < metadata(result)["records_processed"]
    assert_matches(
        stored_points(ga4, "ws-a"), truth(ga4, "1006", today - timedelta(days=29), prop.today())
    )
    assert health(ga4, "ws-a").consecutive_failures == 0


def test_daily_quota_says_when_it_comes_back_and_stores_nothing(ga4) -> None:
    ga4.property("1007", history_days=20)
    ga4.workspace("ws-a", "1007")
    ga4.sandbox.ga4.exhaust("1007", "daily")
    midnights = [_next_pacific_midnight()]
    result = ga4.sync("ws-a")
    midnights.append(_next_pacific_midnight())
    assert result.success
    [error] = metadata(result)["errors"]
    assert "Exhausted property tokens per day" in error
    assert any(f"Retry after {at:%Y-%m-%d %H:%M:%S} UTC" in error for at in midnights)
    assert "Nothing was read" in error
    assert stored_points(ga4, "ws-a") == {} and cursors(ga4, "ws-a") == {}


def test_days_are_the_propertys_own_around_midnight(ga4) -> None:
    tokyo = ga4.property("1008", time_zone="Asia/Tokyo", daily_sessions=0, history_days=10)
    la = ga4.property("1009", time_zone="America/Los_Angeles", daily_sessions=0, history_days=10)
    # 23:30 and 00:30 in Tokyo are the same UTC day (June 10) but two Tokyo days.
    tokyo.add_session(datetime(2025, 6, 10, 14, 30, tzinfo=UTC), channel="Direct")
    tokyo.add_session(datetime(2025, 6, 10, 15, 30, tzinfo=UTC), channel="Email")
    # 23:30 on June 10 in Los Angeles is June 11 in UTC, and stays June 10.
    la.add_session(datetime(2025, 6, 11, 6, 30, tzinfo=UTC), channel="Organic Search")
    for ws, prop in (("ws-t", "1008"), ("ws-l", "1009")):
        ga4.workspace(ws, prop)
        assert ga4.sync(ws, {"start_date": "2025-06-08"}).success
    tokyo_points = read_points(ga4.warehouse, "ws-t", metric="sessions")
    assert {(p.timestamp, p.dimensions.get("channel"), p.value) for p in tokyo_points} == {
        (datetime(2025, 6, 10, tzinfo=UTC), "Direct", 1.0),
        (datetime(2025, 6, 10, tzinfo=UTC), None, 1.0),
        (datetime(2025, 6, 11, tzinfo=UTC), "Email", 1.0),
        (datetime(2025, 6, 11, tzinfo=UTC), None, 1.0),
    }
    assert all(p.metadata["time_zone"] == "Asia/Tokyo" for p in tokyo_points)
    la_points = read_points(ga4.warehouse, "ws-l", metric="sessions")
    assert {(p.timestamp, p.dimensions.get("channel")) for p in la_points} == {
        (datetime(2025, 6, 10, tzinfo=UTC), "Organic Search"),
        (datetime(2025, 6, 10, tzinfo=UTC), None),
    }
    assert all(p.metadata["time_zone"] == "America/Los_Angeles" for p in la_points)


def test_workspaces_are_isolated(ga4) -> None:
    a = ga4.property("2001", history_days=40, daily_sessions=200)
    ga4.property("2002", history_days=40, daily_sessions=60)
    ga4.workspace("ws-a", "2001")
    ga4.workspace("ws-b", "2002")
    assert ga4.sync("ws-a", {"history_days": 30}).success
    assert stored_points(ga4, "ws-b") == {} and cursors(ga4, "ws-b") == {}
    assert ga4.sync("ws-b", {"history_days": 30}).success
    today = a.today()
    start = today - timedelta(days=29)
    assert_matches(stored_points(ga4, "ws-a"), truth(ga4, "2001", start, today))
    assert_matches(stored_points(ga4, "ws-b"), truth(ga4, "2002", start, today))
    assert {c["property_id"] for c in cursors(ga4, "ws-b").values()} == {"2002"}


def test_revoked_access_fails_the_run_with_reconnect_and_no_traceback(ga4, caplog) -> None:
    ga4.property("1010", history_days=10)
    ga4.workspace("ws-a", "1010")
    caplog.set_level(logging.DEBUG)
    assert ga4.sync("ws-a").success
    ga4.sandbox.expire_access_tokens()
    assert ga4.sync("ws-a").success
    ga4.sandbox.revoke(DEMO_REFRESH_TOKEN)
    result = ga4.sync("ws-a")
    assert not result.success
    for secret in [DEMO_REFRESH_TOKEN, "GOCSPX-sandbox-secret", *ga4.sandbox.oauth.access_tokens]:
        assert secret not in caplog.text
    message = failure_message(result)
    assert "Reconnect this workspace to google_analytics" in message
    assert "Traceback" not in message
    assert "Reconnect this workspace" in health(ga4, "ws-a").last_error


def test_a_connect_that_fails_releases_what_it_opened(ga4) -> None:
    ga4.property("1012", history_days=10)
    workspace = ga4.workspace("ws-a", "1012")
    with ga4.warehouse.control() as db:
        [connection] = list_connections(db, provider="google_analytics", workspace_id="ws-a")
    ga4.sandbox.revoke(DEMO_REFRESH_TOKEN)
    adapter = GoogleAnalyticsAdapter()
    with pytest.raises(ProviderAuthError, match="Reconnect this workspace"):
        adapter.connect(SyncContext(ga4.warehouse, workspace, connection, run_id="revoked"))
    assert adapter._api is None  # the OAuth session and its HTTP client are closed
    with pytest.raises(AdapterNotConnected):
        adapter.sync()


def test_a_truncated_response_fails_the_run_and_keeps_completed_windows(ga4) -> None:
    prop = ga4.property("1011", history_days=70)
    ga4.workspace("ws-a", "1011")
    today = prop.today()
    served = prop.reports_served

    # The probe and window 1 (two reports) pass; window 2's first report comes cut in half
    # every time it is asked for (3 attempts).
    ga4.sandbox.add_fault(Fault("delay", api="ga4", times=3))
    ga4.sandbox.add_fault(Fault("truncate", api="ga4", times=3))
    result = ga4.sync("ws-a", {"history_days": 60}, window_days=30, max_attempts=3)
    assert not result.success
    message = failure_message(result)
    assert "is unavailable after 3 attempts" in message and "not JSON" in message
    assert prop.reports_served - served == 6
    first_window_end = today - timedelta(days=30)
    assert {v["synced_through"] for v in cursors(ga4, "ws-a").values()} == {
        first_window_end.isoformat()
    }


def test_a_row_that_fails_validation_is_named_and_skipped() -> None:
    adapter = GoogleAnalyticsAdapter()
    rejections = Rejections(limit=10)
    errors = rejections.errors

    def validated(report, raw, errors):  # the engine's validation, with the adapter's hooks
        return SPEC.engine.validated(adapter, report, raw, rejections)

    good = {
        "dimensionValues": [{"value": "20250601"}, {"value": "Direct"}],
        "metricValues": [{"value": v} for v in ("10", "8", "3", "6", "1")],
    }
    bad = {
        "dimensionValues": [{"value": "2025-06-01"}, {"value": "Email"}],
        "metricValues": [{"value": v} for v in ("10", "8.5", "3", "6", "1")],
    }
    short = {"dimensionValues": [{"value": "20250601"}], "metricValues": [{"value": "1"}]}
    row = validated(BY_DATE_CHANNEL, good, errors)
    assert row is not None and row.day == date(2025, 6, 1) and row.total_users == 8
    assert validated(BY_DATE_CHANNEL, bad, errors) is None
    assert validated(BY_DATE, short, errors) is None
    assert errors[0].startswith("by_date_channel row [2025-06-01, Email]: day:")
    assert "total_users" in errors[0]
    assert errors[1].startswith("by_date row [20250601]:")


def test_the_hourly_schedule_requests_runs_over_every_connected_workspace(ga4) -> None:
    ga4.property("1012", history_days=5)
    ga4.workspace("ws-a", "1012")
    ga4.workspace("ws-b", "1012")
    ga4_definitions = PROVIDERS["google_analytics"]
    defs = dg.Definitions(
        assets=[ga4_definitions.asset],
        jobs=[ga4_definitions.job],
        schedules=[ga4_definitions.schedule],
        resources={"warehouse": WarehouseResource(), "google_analytics": GoogleAnalyticsAdapter()},
    )
    schedule = defs.resolve_schedule_def("google_analytics_schedule")
    assert schedule.cron_schedule == "15 * * * *"
    with dg.build_schedule_context(
        instance=ga4.instance,
        scheduled_execution_time=datetime(2026, 6, 1, 12, 15, tzinfo=UTC),
        resources={"warehouse": WarehouseResource()},
        repository_def=defs.get_repository_def(),
    ) as context:
        data = schedule.evaluate_tick(context)
    # in runs over both workspaces' partitions (the instance holds this module's others)
    assert ticked_workspaces(ga4.instance, "google_analytics", data.run_requests) == [
        "ws-a",
        "ws-b",
    ]
    # the hourly cadence sets no run option besides the connection
    for request in data.run_requests:
        assert list(request.run_config["ops"]["google_analytics_kpis"]["config"]) == ["connection"]
