"""The ad account's record of the truth holds kpi-definitions.md's ad metrics: ratios from
summed numerators and denominators (worked examples 9 and 10), no value where the
denominator is 0, per campaign and for the account."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from kpi_pipelines.sandbox.kit import SimClock
from kpi_pipelines.sandbox.kit.ads import AdAccount, AdMetrics, ScriptedConversions

NOW = datetime(2025, 7, 1, 12, tzinfo=UTC)
DAY_1, DAY_2 = date(2025, 6, 10), date(2025, 6, 11)


def scripted_account(currency: str = "USD") -> tuple[AdAccount, str]:
    ads = AdAccount("act_9", SimClock(NOW), campaigns=0, currency=currency)
    return ads, ads.add_campaign("Worked example", start=date(2025, 6, 1), daily_budget=0)


def example_9(*conversions: ScriptedConversions) -> tuple[AdAccount, str]:
    """Worked example 9's day: $500 spend, 100,000 impressions, 1,250 clicks."""
    ads, cid = scripted_account()
    ads.script_day(
        cid, DAY_1, spend=500, impressions=100_000, clicks=1_250, conversions=conversions
    )
    return ads, cid


def test_worked_example_9_spend_impressions_clicks_and_value() -> None:
    ads, cid = example_9(ScriptedConversions("purchase", 40, 2_000))
    for truth in (
        ads.truth_by_campaign_day(DAY_1, DAY_1)[(cid, DAY_1)],
        ads.truth_by_day(DAY_1, DAY_1)[DAY_1],  # the account's total
        ads.truth(DAY_1, DAY_2, campaign_id=cid),
    ):
        assert truth.ad_spend == Decimal("500.00")
        assert truth.conversion_value == Decimal("2000.00")
        assert truth.ctr == 0.0125
        assert truth.cpc == pytest.approx(0.40)
        assert truth.cpm == pytest.approx(5.00)
        assert truth.roas == 4.0
    assert ads.truth(DAY_1, DAY_1).kpis() == {
        "ad_spend": 500.0,
        "impressions": 100_000.0,
        "clicks": 1_250.0,
        "conversions": 40.0,
        "conversion_value": 2_000.0,
        "ctr": 0.0125,
        "cpc": pytest.approx(0.40),
        "cpm": pytest.approx(5.0),
        "roas": 4.0,
    }


def test_worked_example_10_ctr_over_two_days_is_the_ratio_of_the_sums() -> None:
    ads, cid = scripted_account()
    ads.script_day(cid, DAY_1, spend=3, impressions=1_000, clicks=10)
    ads.script_day(cid, DAY_2, spend=1, impressions=10, clicks=1)
    by_day = ads.truth_by_day(DAY_1, DAY_2)
    assert (by_day[DAY_1].ctr, by_day[DAY_2].ctr) == (0.01, 0.1)
    both = ads.truth(DAY_1, DAY_2)
    assert both.ctr == pytest.approx(11 / 1_010) and round(both.ctr, 5) == 0.01089
    assert both.ctr != pytest.approx(0.055)  # not the average of the daily ratios
    assert AdMetrics.total(by_day.values(), "USD") == both


def test_the_account_ratio_sums_its_campaigns_first() -> None:
    ads, big = scripted_account()
    small = ads.add_campaign("Small", start=date(2025, 6, 1), daily_budget=0)
    ads.script_day(big, DAY_1, spend=900, impressions=90_000, clicks=900)
    ads.script_day(small, DAY_1, spend=100, impressions=10_000, clicks=400)
    account = ads.truth_by_day(DAY_1, DAY_1)[DAY_1]
    assert account.ctr == pytest.approx(1_300 / 100_000)
    assert account.cpc == pytest.approx(1_000 / 1_300)
    assert account.cpm == pytest.approx(10.0)


def test_a_zero_denominator_gives_no_ratio() -> None:
    ads, cid = scripted_account()
    ads.script_day(cid, DAY_1, spend=0, impressions=500, clicks=0)
    truth = ads.truth_by_campaign_day(DAY_1, DAY_1)[(cid, DAY_1)]
    assert (truth.cpc, truth.roas) == (None, None)
    assert truth.ctr == 0.0 and truth.cpm == 0.0
    assert set(truth.kpis()) == {
        "ad_spend",
        "impressions",
        "clicks",
        "conversions",
        "conversion_value",
        "ctr",
        "cpm",
    }
    nothing = AdMetrics.total([], "USD")
    assert (nothing.ctr, nothing.cpc, nothing.cpm, nothing.roas) == (None, None, None, None)


def test_the_truth_is_what_the_platform_shows_at_the_instant_asked() -> None:
    ads, _ = example_9(
        ScriptedConversions("purchase", 30, 1_500),
        ScriptedConversions("purchase", 10, 500, after=timedelta(days=7)),
    )
    end = ads.day_bounds(DAY_1)[1]
    assert ads.truth_by_day(DAY_1, DAY_1, as_of=end - timedelta(days=1)) == {}  # not yet
    early = ads.truth(DAY_1, DAY_1, as_of=end + timedelta(days=1))
    late = ads.truth(DAY_1, DAY_1, as_of=end + timedelta(days=8))
    assert (early.conversions, early.roas) == (30, 3.0)
    assert (late.conversions, late.roas) == (40, 4.0)


def test_metrics_of_different_currencies_do_not_add() -> None:
    usd = AdMetrics.total([], "USD")
    with pytest.raises(ValueError, match="cannot add EUR metrics to USD"):
        usd + AdMetrics.total([], "EUR")
