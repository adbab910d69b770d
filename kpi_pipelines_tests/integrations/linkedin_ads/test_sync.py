"""LinkedIn Ads through the real pipeline: the simulator over HTTP -> OAuth -> adAnalytics
-> kpi_data. Every expected number is the simulator's own record of the truth (its UTC-day
figures of the simulated accounts), never what the pipeline computed."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from kpi_pipelines.demo import materialize_workspaces
from kpi_pipelines.integrations.linkedin_ads.adapter import LinkedInAdsAdapter
from kpi_pipelines.integrations.linkedin_ads.spec import SPEC
from kpi_pipelines.integrations.shared.spec import ProviderSpec
from kpi_pipelines.sandbox.kit.ads import AdMetrics, ScriptedConversions
from kpi_pipelines.warehouse.tenant_data import read_points
from kpi_pipelines_tests.conftest import table_snapshot
from kpi_pipelines_tests.integrations.linkedin_ads.conftest import (
    CLIENT_SECRET,
    Key,
    LinkedInWorld,
    expected,
)
from kpi_pipelines_tests.run_results import failure_message, metadata

TODAY = date(2026, 11, 20)  # the simulator's clock starts at noon UTC


def assert_matches(stored: dict[Key, float], wanted: dict[Key, float]) -> None:
    assert stored.keys() == wanted.keys()
    for key, value in wanted.items():
        assert stored[key] == pytest.approx(value, rel=1e-9), key


def truth(linkedin: LinkedInWorld, account_id: str, start: date, end: date, **rule) -> dict:
    """The campaigns' days with delivery, and every day of the account: one without any
    delivery is 0 (LinkedIn answers nothing for it)."""
    sandbox = linkedin.sandbox
    quiet = AdMetrics(sandbox.accounts[account_id].currency, Decimal(0), 0, 0, 0, Decimal(0))
    days = sandbox.truth_by_day(account_id, start, end, **rule)
    every_day = {start + timedelta(days=n): quiet for n in range((end - start).days + 1)}
    return expected(sandbox.truth_by_campaign_day(account_id, start, end, **rule)) | expected(
        every_day | days
    )


def test_first_sync_is_the_truth_per_campaign_and_for_the_account(linkedin) -> None:
    linkedin.account("5100", time_zone="America/Los_Angeles")
    linkedin.workspace("ws-a", "5100")
    result = linkedin.sync("ws-a", {"history_days": 30})
    assert result.success, failure_message(result)
    assert metadata(result)["success"] is True
    start = TODAY - timedelta(days=29)
    assert_matches(linkedin.points("ws-a"), truth(linkedin, "5100", start, TODAY))
    account = linkedin.sandbox.accounts["5100"]
    names = {c.id: c.name for c in account.campaigns()}
    for point in read_points(linkedin.warehouse, "ws-a", metric="ad_spend"):
        assert point.metadata["time_zone"] == "UTC" and point.metadata["currency"] == "USD"
        campaign = point.dimensions.get("campaign_id")
        if campaign is not None:
            assert point.metadata["campaign_name"] == names[campaign]
    snapshot = repr(table_snapshot(linkedin.warehouse))
    for secret in (CLIENT_SECRET, "AQX-refresh-ws-a-value", "AQV"):  # AQV...: access tokens
        assert secret not in snapshot


def test_days_are_linkedins_utc_days_whatever_the_zones(linkedin) -> None:
    """A Tokyo advertiser's day is two UTC days; a workspace in Los Angeles still gets
    LinkedIn's UTC days, and "today" is LinkedIn's (its clock), not the workspace's."""
    account = linkedin.account("5200", time_zone="Asia/Tokyo", campaigns=0)
    campaign = account.add_campaign("Tokyo", start=date(2026, 11, 1), daily_budget=0)
    account.script_day(campaign, date(2026, 11, 20), spend="240.00", impressions=24_000, clicks=240)
    # 00:40 UTC on the 20th: still the 19th in Los Angeles, already 09:40 in Tokyo.
    linkedin.sandbox.clock.advance_to(datetime(2026, 11, 21, 0, 40, tzinfo=UTC))
    linkedin.workspace("ws-la", "5200", timezone="America/Los_Angeles")
    assert linkedin.sync("ws-la", {"start_date": "2026-11-15"}).success
    spend = {(day, c): v for (_, day, c), v in linkedin.points("ws-la", "ad_spend").items()}
    spent = {day: v for (day, c), v in spend.items() if c is None and v}
    assert sorted(spent) == [date(2026, 11, 19), date(2026, 11, 20)]
    assert sum(spent.values()) == pytest.approx(240.0)
    wanted = linkedin.sandbox.truth_by_day("5200", date(2026, 11, 15), date(2026, 11, 21))
    assert {day: float(m.ad_spend) for day, m in wanted.items()} == pytest.approx(spent)
    assert min(day for day, c in spend if c is None) == date(2026, 11, 15)  # quiet days: 0
    with linkedin.warehouse.tenant("ws-la", actor="test") as db:
        cursors = dict(db.execute(sa.text("SELECT stream, cursor FROM sync_state")).all())
    assert cursors["by_account"]["synced_through"] == "2026-11-21"  # LinkedIn's today
    assert cursors["by_account"]["time_zone"] == "UTC"


def test_restated_days_are_audited_and_unchanged_days_write_nothing(linkedin) -> None:
    linkedin.account("5300")
    linkedin.workspace("ws-a", "5300")
    assert linkedin.sync("ws-a", {"history_days": 60}).success
    before = linkedin.points("ws-a")
    linkedin.sandbox.clock.advance(hours=72)  # conversions keep arriving for 30 days
    result = linkedin.sync("ws-a")
    assert result.success, failure_message(result)
    after = linkedin.points("ws-a")
    today = TODAY + timedelta(days=3)
    assert_matches(after, truth(linkedin, "5300", TODAY - timedelta(days=59), today))
    changed = {k: (before[k], v) for k, v in after.items() if k in before and before[k] != v}
    assert changed, "three more days of conversions should restate recent days"
    # Only the cursor minus LinkedIn's 30 days was read again.
    assert all(day >= TODAY - timedelta(days=30) for _, day, _ in changed)
    assert min(day for _, day, _ in after) == TODAY - timedelta(days=59)
    with linkedin.warehouse.tenant("ws-a", actor="test") as db:
        rows = db.execute(
            sa.text(
                'SELECT metric, "timestamp", dimensions_key, old_value, new_value'
                " FROM audit_log WHERE action = 'update'"
            )
        ).all()
    audited = {
        (r.metric, r.timestamp.date(), json.loads(r.dimensions_key or "{}").get("campaign_id")): (
            r.old_value,
            r.new_value,
        )
        for r in rows
    }
    assert len(rows) == len(audited) == len(changed)  # unchanged values wrote nothing
    for key, values in changed.items():
        assert audited[key] == pytest.approx(values), key
    count = sa.text("SELECT count(*) FROM audit_log")
    with linkedin.warehouse.tenant("ws-a", actor="test") as db:
        audited_before = db.execute(count).scalar_one()
    again = linkedin.sync("ws-a")  # the same hour: LinkedIn restated nothing since
    assert again.success and metadata(again)["points_written"] == 0
    assert metadata(again)["points_unchanged"] > 0
    with linkedin.warehouse.tenant("ws-a", actor="test") as db:
        assert db.execute(count).scalar_one() == audited_before


def scripted(linkedin: LinkedInWorld, account_id: str, **options) -> tuple[str, str]:
    """An account of an advertiser in UTC (its days are LinkedIn's) with two campaigns
    that deliver only on the days a test scripts."""
    account = linkedin.account(account_id, time_zone="UTC", campaigns=0, **options)
    first = account.add_campaign("First", start=date(2026, 11, 1), daily_budget=0)
    second = account.add_campaign("Second", start=date(2026, 11, 1), daily_budget=0)
    return first, second


def test_worked_example_9_per_campaign_and_for_the_account(linkedin) -> None:
    first, _ = scripted(linkedin, "5400")
    day = date(2026, 11, 10)
    linkedin.sandbox.accounts["5400"].script_day(
        first,
        day,
        spend=500,
        impressions=100_000,
        clicks=1_250,
        conversions=[ScriptedConversions("purchase", 40, 2_000)],
    )
    linkedin.workspace("ws-a", "5400")
    assert linkedin.sync("ws-a", {"start_date": "2026-11-09"}).success
    points = linkedin.points("ws-a")
    for campaign in (first, None):
        assert {m: v for (m, d, c), v in points.items() if d == day and c == campaign} == (
            pytest.approx(
                {
                    "ad_spend": 500.0,
                    "impressions": 100_000.0,
                    "clicks": 1_250.0,
                    "conversions": 40.0,
                    "conversion_value": 2_000.0,
                    "ctr": 0.0125,
                    "cpc": 0.40,
                    "cpm": 5.00,
                    "roas": 4.0,
                }
            )
        )


def test_worked_example_10_and_no_point_on_a_zero_denominator(linkedin) -> None:
    """The account's CTR on a day is LinkedIn's account row: 11/1,010, not the average of
    its campaigns' 0.01 and 0.1; a day without spend has no roas, one without clicks no
    cpc."""
    first, second = scripted(linkedin, "5500")
    account = linkedin.sandbox.accounts["5500"]
    day, quiet = date(2026, 11, 10), date(2026, 11, 11)
    account.script_day(first, day, spend=5, impressions=1_000, clicks=10)
    account.script_day(second, day, spend=0, impressions=10, clicks=1)
    account.script_day(first, quiet, spend="3.00", impressions=500, clicks=0)
    linkedin.workspace("ws-a", "5500")
    assert linkedin.sync("ws-a", {"start_date": "2026-11-09"}).success
    points = linkedin.points("ws-a")
    assert points[("ctr", day, first)] == pytest.approx(0.01)
    assert points[("ctr", day, second)] == pytest.approx(0.1)
    assert points[("ctr", day, None)] == pytest.approx(11 / 1_010)
    assert round(points[("ctr", day, None)], 5) == 0.01089
    # A zero numerator is a point, a zero denominator is none: no spend, no roas.
    assert points[("cpc", day, second)] == points[("cpm", day, second)] == 0.0
    assert ("roas", day, second) not in points
    assert ("cpc", quiet, first) not in points and ("cpc", quiet, None) not in points
    assert points[("cpm", quiet, first)] == pytest.approx(6.0)


def test_money_is_converted_with_the_days_rate(linkedin) -> None:
    first, _ = scripted(linkedin, "5600")
    account = linkedin.sandbox.accounts["5600"]
    days = [date(2026, 11, 10), date(2026, 11, 11)]
    for day in days:
        account.script_day(
            first,
            day,
            spend="100.00",
            impressions=10_000,
            clicks=50,
            conversions=[ScriptedConversions("purchase", 2, "300.00")],
        )
    linkedin.workspace("ws-eu", "5600", currency="EUR")
    linkedin.rates("EUR", {day: 0.9 + n / 100 for n, day in enumerate(days)})
    missing = linkedin.sync("ws-eu", {"start_date": "2026-11-09", "end_date": "2026-11-11"})
    assert not missing.success
    assert "USD on 2026-11-09" in failure_message(missing)  # never a silent 1.0
    linkedin.rates("EUR", {date(2026, 11, 9): 0.5})
    assert linkedin.sync("ws-eu", {"start_date": "2026-11-09", "end_date": "2026-11-11"}).success
    points = linkedin.points("ws-eu")
    for n, day in enumerate(days):
        rate = 0.9 + n / 100
        assert points[("ad_spend", day, None)] == pytest.approx(100 * rate)
        assert points[("conversion_value", day, first)] == pytest.approx(300 * rate)
        assert points[("cpc", day, None)] == pytest.approx(2 * rate)
        assert points[("roas", day, None)] == pytest.approx(3.0)
    [spend] = read_points(
        linkedin.warehouse, "ws-eu", metric="ad_spend", since=datetime(2026, 11, 11, tzinfo=UTC)
    )[:1]
    assert spend.metadata["currency"] == "USD" and Decimal(spend.metadata["amount"]) == 100


def test_conversions_are_what_the_connection_counts(linkedin) -> None:
    first, _ = scripted(linkedin, "5700")
    day = date(2026, 11, 10)
    linkedin.sandbox.accounts["5700"].script_day(
        first,
        day,
        spend=100,
        impressions=10_000,
        clicks=100,
        conversions=[
            ScriptedConversions("purchase", 3, 90, channel="web"),
            ScriptedConversions("purchase", 5, 150, channel="app"),  # not LinkedIn's to count
            ScriptedConversions("lead", 7, channel="onsite"),  # LinkedIn's lead forms
        ],
    )
    linkedin.workspace("ws-web", "5700")
    linkedin.workspace(
        "ws-leads",
        "5700",
        conversions=["externalWebsiteConversions", "oneClickLeads"],
        conversion_value=None,
    )
    for ws in ("ws-web", "ws-leads"):
        assert linkedin.sync(ws, {"start_date": "2026-11-09"}).success
    web, leads = linkedin.points("ws-web"), linkedin.points("ws-leads")
    assert web[("conversions", day, None)] == 3 and web[("conversion_value", day, None)] == 90
    assert leads[("conversions", day, None)] == 10
    assert not {m for m, _, _ in leads} & {"conversion_value", "roas"}
    asked = [r["fields"] for r in linkedin.sandbox.served if r["endpoint"] == "adAnalytics"]
    assert all(len(f) - 2 <= 20 for f in asked)  # dateRange and pivotValues are not metrics
    assert {"oneClickLeads"} <= set(asked[-1]) and "conversionValueInLocalCurrency" not in asked[-1]


def test_metrics_past_a_requests_limit_are_asked_in_chunks_and_merged(linkedin) -> None:
    """adAnalytics takes at most 20 metrics a request (the spec's max_metrics): the engine
    asks for the fields in chunks and merges each day's rows. With both limits at 2, the
    connection's 5 metrics take 3 requests a window, and the points are still the truth."""
    linkedin.account("5800")
    linkedin.workspace("ws-a", "5800")
    linkedin.sandbox.max_metrics = 2
    reports = tuple(replace(report, max_metrics=2) for report in SPEC.engine.reports)
    spec = replace(SPEC, engine=replace(SPEC.engine, reports=reports))

    class TwoMetricsARequest(LinkedInAdsAdapter):
        @property
        def spec(self) -> ProviderSpec:  # the adapter finds its spec by key: this one
            return spec

    [result] = materialize_workspaces(
        linkedin.warehouse,
        linkedin.instance,
        spec,
        ["ws-a"],
        {"history_days": 20},
        adapter=TwoMetricsARequest(backoff_base_seconds=0.01),
    )
    assert result.success, failure_message(result)
    assert_matches(
        linkedin.points("ws-a"), truth(linkedin, "5800", TODAY - timedelta(days=19), TODAY)
    )
    asked = [r for r in linkedin.sandbox.served if r["endpoint"] == "adAnalytics"]
    assert {len(r["fields"]) - 2 for r in asked} == {1, 2}  # dateRange, pivotValues aside
    by_account = {m for r in asked if r["pivot"] == "ACCOUNT" for m in r["fields"][2:]}
    assert len(by_account) == 5
