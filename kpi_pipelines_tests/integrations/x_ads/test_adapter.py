"""X Ads through the real pipeline: the X sandbox over HTTP (OAuth 1.0a verified) -> the
report engine -> kpi_data on PostgreSQL, compared with the sandbox's own record of the truth.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from kpi_pipelines.integrations.shared.ad_metrics import AD_METRICS
from kpi_pipelines.sandbox.kit.ads import ConversionRule, ScriptedConversions
from kpi_pipelines_tests.integrations.x_ads.conftest import XAdsWorld, assert_matches, truth
from kpi_pipelines_tests.run_results import failure_message, metadata


@pytest.mark.parametrize(
    ("zone", "currency", "rate"),
    [("America/Los_Angeles", "USD", 1.0), ("Asia/Tokyo", "JPY", 0.0064)],
)
def test_a_first_sync_is_the_truth_per_campaign_and_for_the_account_in_its_own_days(
    x: XAdsWorld, zone: str, currency: str, rate: float
) -> None:
    """20 days (one async job per 20 campaigns) in the account's time zone and currency,
    converted at the day's rate; the account's days are the sum of its campaigns'."""
    account = x.account("18ce54d4x5t", time_zone=zone, currency=currency, campaigns=40)
    today = account.local_day()
    first = today - timedelta(days=19)
    if currency != "USD":
        x.rates(currency, "USD", first, today, rate)
    x.connect("ws-a", "18ce54d4x5t")
    result = x.sync("ws-a", {"history_days": 20})
    assert result.success, failure_message(result)
    assert_matches(x.stored("ws-a"), truth(account, first, today, rate=rate))
    listed = len(account.campaigns())  # those created by now, deleted ones included
    assert listed > 20 and metadata(result)["report_jobs"] == -(-listed // 20)
    point = next(p for p in x.points("ws-a") if p.metric == "ad_spend")
    assert point.metadata["currency"] == currency and point.metadata["time_zone"] == zone


def test_a_short_sync_reads_synchronously_and_names_each_campaign(x: XAdsWorld) -> None:
    account = x.account("18ce54d4x5t", campaigns=12)
    x.connect("ws-a", "18ce54d4x5t")
    result = x.sync("ws-a", {"history_days": 5})
    assert result.success, failure_message(result)
    assert metadata(result)["report_jobs"] == 0
    today = account.local_day()
    assert_matches(x.stored("ws-a"), truth(account, today - timedelta(days=4), today))
    names = {c.id: (c.name, c.status) for c in account.campaigns()}
    for point in x.points("ws-a"):
        cid = point.dimensions.get("campaign_id")
        if cid is not None:
            assert (point.metadata["campaign_name"], cid in names) == (names[cid][0], True)


def test_worked_examples_9_and_10(x: XAdsWorld) -> None:
    """Example 9 on one campaign's day; example 10's ratio of sums on the account's day of
    two campaigns (10/1,000 and 1/10 clicks: 11/1,010, never the mean 0.055); a day that
    cost nothing has no cost ratios."""
    account = x.account("18ce54d4x5t", campaigns=0)
    day = account.local_day() - timedelta(days=2)
    nine = account.add_campaign("Example 9", start=day, daily_budget=0)
    big = account.add_campaign("Big", start=day + timedelta(days=1), daily_budget=0)
    small = account.add_campaign("Small", start=day + timedelta(days=1), daily_budget=0)
    purchases = ScriptedConversions("purchase", 40, Decimal(2000))
    account.script_day(
        nine, day, spend=500, impressions=100_000, clicks=1_250, conversions=[purchases]
    )
    account.script_day(big, day + timedelta(days=1), spend=3, impressions=1_000, clicks=10)
    account.script_day(small, day + timedelta(days=1), spend=1, impressions=10, clicks=1)
    free = account.add_campaign("Free", start=day - timedelta(days=1), daily_budget=0)
    account.script_day(free, day - timedelta(days=1), spend=0, impressions=50, clicks=0)
    x.connect("ws-a", "18ce54d4x5t")
    result = x.sync("ws-a", {"history_days": 4})
    assert result.success, failure_message(result)
    stored = x.stored("ws-a")
    for who in (nine, None):
        assert stored[("ctr", day, who)] == pytest.approx(0.0125)
        assert stored[("cpc", day, who)] == pytest.approx(0.40)
        assert stored[("cpm", day, who)] == pytest.approx(5.00)
        assert stored[("roas", day, who)] == pytest.approx(4.0)
        assert stored[("conversion_value", day, who)] == pytest.approx(2000)
    next_day = day + timedelta(days=1)
    assert stored[("ctr", next_day, None)] == pytest.approx(11 / 1_010)
    assert stored[("ctr", next_day, big)] == pytest.approx(0.01)
    assert stored[("roas", next_day, None)] == 0  # no conversion value over a spend of 4
    # No point where the denominator is 0: a free day has no CPC and no ROAS.
    for who in (free, None):
        defined = {m for m, d, c in stored if (d, c) == (day - timedelta(days=1), who)}
        assert defined == set(AD_METRICS) - {"cpc", "roas"}


def test_a_deleted_campaigns_spend_stays_in_the_accounts_days(x: XAdsWorld) -> None:
    account = x.account("18ce54d4x5t", campaigns=0)
    today = account.local_day()
    gone = account.add_campaign("Spent, then deleted", start=today - timedelta(days=3))
    kept = account.add_campaign("Still running", start=today - timedelta(days=3))
    account.set_status(gone, "archived", at=account.day_bounds(today - timedelta(days=1))[0])
    x.connect("ws-a", "18ce54d4x5t")
    result = x.sync("ws-a", {"history_days": 4})
    assert result.success, failure_message(result)
    stored = x.stored("ws-a")
    assert_matches(stored, truth(account, today - timedelta(days=3), today))
    assert any(cid == gone for _, _, cid in stored) and any(cid == kept for _, _, cid in stored)


def test_the_connection_says_which_web_conversions_count(x: XAdsWorld) -> None:
    account = x.account("18ce54d4x5t", campaigns=10)
    x.connect("ws-a", "18ce54d4x5t", conversion_events=["sign_ups", "purchases"])
    result = x.sync("ws-a", {"history_days": 6})
    assert result.success, failure_message(result)
    today = account.local_day()
    rule = ConversionRule(kinds=frozenset({"sign_up", "purchase"}), channels=frozenset({"web"}))
    expected = truth(account, today - timedelta(days=5), today, rule=rule)
    assert_matches(x.stored("ws-a"), expected)
    assert any(v for (m, _, _), v in expected.items() if m == "conversions")


def test_restated_days_are_read_again_and_unchanged_ones_write_nothing(x: XAdsWorld) -> None:
    account = x.account("18ce54d4x5t", campaigns=15)
    x.connect("ws-a", "18ce54d4x5t")
    assert x.sync("ws-a", {"history_days": 10}).success
    audited = x.audit_rows("ws-a")
    again = x.sync("ws-a")
    assert again.success and metadata(again)["points_written"] == 0
    assert x.audit_rows("ws-a") == audited  # nothing changed: nothing written or audited
    first = account.local_day() - timedelta(days=9)
    earlier = x.sandbox.clock.now()
    x.sandbox.clock.advance(hours=20)
    later = x.sync("ws-a")
    assert later.success, failure_message(later)
    today = account.local_day()
    assert_matches(x.stored("ws-a"), truth(account, first, today))
    restated = account.restated(first, today, earlier, x.sandbox.clock.now())
    assert restated and all(day >= today - timedelta(days=4) for _, day in restated)
    assert metadata(later)["points_written"] > 0
    assert x.audit_rows("ws-a") > audited


def test_workspaces_see_only_their_own_accounts(x: XAdsWorld) -> None:
    la = x.account("laacct", time_zone="America/Los_Angeles", campaigns=6)
    tokyo = x.account("tkacct", time_zone="Asia/Tokyo", currency="USD", campaigns=6)
    x.connect("ws-la", "laacct")
    x.connect("ws-tokyo", "tkacct")
    for workspace in ("ws-la", "ws-tokyo"):
        assert x.sync(workspace, {"history_days": 4}).success
    for workspace, account in (("ws-la", la), ("ws-tokyo", tokyo)):
        today = account.local_day()
        assert_matches(x.stored(workspace), truth(account, today - timedelta(days=3), today))


def test_days_across_a_clock_change_are_xs_24_hours_at_todays_offset(
    warehouse, dagster_instance, monkeypatch
) -> None:
    """In December, Los Angeles is 8 hours behind UTC, and X's days of late October (then 7
    hours behind) are counted from midnight at today's offset: 01:00 to 01:00 local time.
    What is stored for those days is what X counts for them, never a day of 23 or 25 hours."""
    start = datetime(2025, 12, 10, 20, tzinfo=UTC)
    with XAdsWorld.served(warehouse, dagster_instance, monkeypatch, start=start) as x:
        account = x.account("laacct", time_zone="America/Los_Angeles", campaigns=8)
        x.connect("ws-a", "laacct")
        result = x.sync("ws-a", {"start_date": "2025-10-30", "end_date": "2025-11-04"})
        assert result.success, failure_message(result)
        stored = x.stored("ws-a")
    pst = timezone(timedelta(hours=-8))
    expected = {}
    for n in range(6):
        day = date(2025, 10, 30) + timedelta(days=n)
        begins = datetime.combine(day, datetime.min.time(), pst)
        for campaign in account.campaigns():
            figures = account.figures(campaign.id, begins, begins + timedelta(days=1))
            if figures is not None:
                expected[("ad_spend", day, campaign.id)] = float(figures.spend.major)
    spend = {k: v for k, v in stored.items() if k[0] == "ad_spend" and k[2] is not None}
    assert spend.keys() == expected.keys()
    assert all(spend[k] == pytest.approx(v) for k, v in expected.items())
