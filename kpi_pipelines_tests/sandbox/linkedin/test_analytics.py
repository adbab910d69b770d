"""adAnalytics as LinkedIn serves it: UTC days whatever the advertiser's zone, the fields
asked for (at most 20 metrics), money as decimal strings, no element without activity,
nothing for an account without a role, figures that restate for 30 days; and what it serves
is the sandbox's own record of the truth."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from kpi_pipelines.sandbox.kit.ads import ScriptedConversions
from kpi_pipelines_tests.sandbox.linkedin.conftest import (
    ACCOUNT,
    Served,
    analytics_query,
)

START, END = date(2026, 10, 1), date(2026, 11, 19)


def by_key(elements: list[dict]) -> dict[tuple[str, date], dict]:
    out = {}
    for element in elements:
        start = element["dateRange"]["start"]
        out[(element["pivotValues"][0], date(start["year"], start["month"], start["day"]))] = (
            element
        )
    return out


def test_campaign_days_are_utc_days_and_are_the_truth(served: Served) -> None:
    sandbox = served.sandbox
    body = served.ok(analytics_query(START, END))
    truth = sandbox.truth_by_campaign_day(ACCOUNT, START, END)
    served_rows = by_key(body["elements"])
    assert len(served_rows) == len(truth) > 50
    for (campaign_id, day), metrics in truth.items():
        element = served_rows[(f"urn:li:sponsoredCampaign:{campaign_id}", day)]
        assert element["impressions"] == metrics.impressions
        assert element["clicks"] == metrics.clicks
        assert Decimal(element["costInLocalCurrency"]) == metrics.ad_spend
        assert element["externalWebsiteConversions"] == metrics.conversions
        assert Decimal(element["conversionValueInLocalCurrency"]) == metrics.conversion_value
        assert isinstance(element["costInLocalCurrency"], str)


def test_a_tokyo_day_is_two_utc_days(served: Served) -> None:
    account = served.sandbox.accounts[ACCOUNT]  # Asia/Tokyo, UTC+9
    campaign = account.add_campaign("Tokyo", start=date(2026, 11, 1), daily_budget=0)
    account.script_day(campaign, date(2026, 11, 10), spend="240.00", impressions=24_000, clicks=240)
    rows = by_key(
        served.ok(
            analytics_query(
                date(2026, 11, 8),
                date(2026, 11, 12),
                facet=f"campaigns=List(urn%3Ali%3AsponsoredCampaign%3A{campaign})",
            )
        )["elements"]
    )
    urn = f"urn:li:sponsoredCampaign:{campaign}"
    assert sorted(day for _, day in rows) == [date(2026, 11, 9), date(2026, 11, 10)]
    # 00:00-15:00 UTC of the 10th is 09:00-24:00 in Tokyo: the busier part of its day.
    assert (
        rows[(urn, date(2026, 11, 10))]["impressions"]
        > rows[(urn, date(2026, 11, 9))]["impressions"]
    )
    assert sum(e["impressions"] for e in rows.values()) == 24_000
    assert sum(Decimal(e["costInLocalCurrency"]) for e in rows.values()) == Decimal("240.00")


def test_the_account_pivot_months_and_all(served: Served) -> None:
    sandbox = served.sandbox
    daily = by_key(served.ok(analytics_query(START, END, pivot="ACCOUNT"))["elements"])
    for day, metrics in sandbox.truth_by_day(ACCOUNT, START, END).items():
        element = daily[(f"urn:li:sponsoredAccount:{ACCOUNT}", day)]
        assert element["clicks"] == metrics.clicks
        assert Decimal(element["costInLocalCurrency"]) == metrics.ad_spend
    whole = served.ok(analytics_query(START, END, pivot="ACCOUNT", granularity="ALL"))
    [element] = whole["elements"]
    assert element["dateRange"]["end"] == {"year": 2026, "month": 11, "day": 19}
    assert element["impressions"] == sum(e["impressions"] for e in daily.values())
    months = served.ok(analytics_query(START, END, pivot="(value:ACCOUNT)", granularity="MONTHLY"))
    assert [e["dateRange"]["start"]["month"] for e in months["elements"]] == [10, 11]
    assert sum(e["clicks"] for e in months["elements"]) == element["clicks"]


def test_fields_asked_for_and_at_most_20_metrics(served: Served) -> None:
    plain = served.ok(analytics_query(START, START, fields=None))["elements"][0]
    assert set(plain) == {"dateRange", "pivotValues", "impressions", "clicks"}
    only = served.ok(analytics_query(START, START, fields="pivotValues,clicks"))["elements"][0]
    assert set(only) == {"pivotValues", "clicks"}
    metrics = ["impressions", "clicks", "likes", "shares", "comments", "follows", "opens"]
    metrics += [f"video{part}" for part in ("Views", "Starts", "Completions")]
    metrics += ["sends", "reactions", "registrations", "talentLeads", "viralClicks"]
    metrics += ["viralImpressions", "textUrlClicks", "totalEngagements", "cardClicks"]
    metrics += ["actionClicks", "costInUsd"]
    assert len(metrics) == 21
    refused = served.get(analytics_query(START, START, fields=",".join(metrics)))
    assert refused.status_code == 400
    error = refused.json()["errorDetails"]["inputErrors"][0]
    assert error["input"]["inputPath"]["fieldPath"] == "fields"
    assert "21" in error["description"]
    assert served.get(analytics_query(START, START, fields="likes")).status_code == 400


def test_wrongly_encoded_queries_get_linkedins_400(served: Served) -> None:
    good = analytics_query(START, START)
    for bad, param in (
        (good.replace("dateRange=(start:", "dateRange=%28start%3A"), "dateRange"),
        (good.replace("urn%3Ali%3AsponsoredAccount%3A", "urn:li:sponsoredAccount:"), "accounts"),
        (good.replace("pivot=CAMPAIGN", "pivot=CREATIVE"), "pivot"),
    ):
        response = served.get(bad)
        assert response.status_code == 400, bad
        assert response.json()["errorDetails"]["inputErrors"][0]["code"] == "PARAM_INVALID"
        assert response.json()["errorDetails"]["inputErrors"][0]["input"]["inputPath"] == {
            "fieldPath": param
        }


def test_an_account_without_a_role_is_an_empty_answer(served: Served) -> None:
    served.sandbox.add_account("7700", currency="EUR", campaigns=3)
    facet = "accounts=List(urn%3Ali%3AsponsoredAccount%3A7700)"
    assert served.ok(analytics_query(START, END, facet=facet))["elements"] == []


def test_a_long_answer_is_cut_off_without_notice(served: Served) -> None:
    served.sandbox.max_elements = 10
    assert len(served.ok(analytics_query(START, END))["elements"]) == 10


def test_conversions_restate_for_30_days_then_stop(served: Served) -> None:
    sandbox = served.sandbox
    account = sandbox.accounts[ACCOUNT]
    campaign = account.add_campaign("Late", start=date(2026, 11, 1), daily_budget=0)
    day = date(2026, 11, 19)  # in Tokyo: it ends at 15:00 UTC on the 19th
    account.script_day(
        campaign,
        day,
        spend=100,
        impressions=10_000,
        clicks=100,
        conversions=[
            ScriptedConversions("purchase", 2, 80, after=timedelta(days=1)),
            ScriptedConversions("purchase", 3, 150, after=timedelta(days=20)),
        ],
    )
    facet = f"campaigns=List(urn%3Ali%3AsponsoredCampaign%3A{campaign})"

    def conversions() -> int:
        return sum(
            e["externalWebsiteConversions"]
            for e in served.ok(analytics_query(day - timedelta(days=1), day, facet=facet))[
                "elements"
            ]
        )

    assert conversions() == 0
    sandbox.clock.advance_to(datetime(2026, 11, 21, tzinfo=UTC))
    assert conversions() == 2
    sandbox.clock.advance_to(datetime(2026, 12, 10, tzinfo=UTC))
    assert conversions() == 5
    sandbox.clock.advance_to(datetime(2027, 1, 10, tzinfo=UTC))
    assert conversions() == 5
