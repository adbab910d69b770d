"""Synchronous stats as X serves them: per-day arrays (null where an entity has nothing),
money in micros, X's limits refused in X's words, the account's own days, restatement."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from kpi_pipelines.sandbox.kit.ads import WEB_PURCHASES
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.sandbox.x import XSandbox, create_x_app
from kpi_pipelines_tests.sandbox.x.conftest import CONSUMER_KEY, CONSUMER_SECRET, XWorld

TOKYO = ZoneInfo("Asia/Tokyo")


def window(first: date, days: int, zone: ZoneInfo = TOKYO) -> dict[str, str]:
    start = datetime.combine(first, datetime.min.time(), zone)
    return {
        "start_time": start.isoformat(),
        "end_time": (start + timedelta(days=days)).isoformat(),
    }


def campaign_ids(x: XWorld, n: int) -> list[str]:
    return [c.id for c in x.account.campaigns()][:n]


def test_a_week_of_twenty_campaigns_is_their_truth_day_by_day(x: XWorld) -> None:
    first = x.account.local_day() - timedelta(days=7)
    ids = campaign_ids(x, 20)
    body = x.stats(entity_ids=",".join(ids), **window(first, 7)).json()
    assert body["data_type"] == "stats" and body["time_series_length"] == 7
    assert body["request"]["params"]["entity_ids"] == ids
    rows = x.account.daily(first, first + timedelta(days=6), campaign_ids=ids)
    days = [first + timedelta(days=n) for n in range(7)]
    silent = 0
    for entry in body["data"]:
        (series,) = entry["id_data"]
        assert series["segment"] is None
        metrics = series["metrics"]
        figures = [rows.get((entry["id"], day)) for day in days]
        if not any(figures):
            silent += 1
            assert metrics["impressions"] is None and metrics["billed_charge_local_micro"] is None
            assert metrics["conversion_purchases"] is None
            continue
        assert metrics["billed_charge_local_micro"] == [f.spend.micros if f else 0 for f in figures]
        assert metrics["impressions"] == [f.impressions if f else 0 for f in figures]
        assert metrics["clicks"] == [f.clicks if f else 0 for f in figures]
        purchases = metrics["conversion_purchases"]
        web = [f.count(WEB_PURCHASES) if f else 0 for f in figures]
        if not any(web):
            assert purchases is None
            continue
        assert purchases["metric"] == web
        values = [f.value(WEB_PURCHASES).micros if f else 0 for f in figures]
        assert purchases["sale_amount"] == (values if any(values) else None)
        view, engaged = purchases["post_view"] or [0] * 7, purchases["post_engagement"]
        assert [a + b for a, b in zip(view, engaged, strict=True)] == web
    assert 0 < silent < len(ids)  # some campaigns did not deliver that week


@pytest.mark.parametrize(
    ("change", "code", "parameter"),
    [
        ({"entity_ids": ",".join(f"c{n}" for n in range(21))}, "INVALID_PARAMETER", "entity_ids"),
        ({"end_time": "2025-06-13T00:00:00+09:00"}, "INVALID_PARAMETER", "end_time"),
        ({"start_time": "2025-06-01T00:30:00+09:00"}, "INVALID_PARAMETER", "start_time"),
        ({"start_time": "2025-06-01T00:00:00"}, "INVALID_PARAMETER", "start_time"),
        ({"granularity": ""}, "MISSING_PARAMETER", "granularity"),
        ({"placement": "EVERYWHERE"}, "INVALID_PARAMETER", "placement"),
        ({"metric_groups": "MOBILE_CONVERSION,BILLING"}, "INVALID_PARAMETER", "metric_groups"),
        ({"entity": "ACCOUNT"}, "INVALID_PARAMETER", "metric_groups"),  # no BILLING for it
    ],
)
def test_what_x_refuses_gets_its_400(
    x: XWorld, change: dict[str, str], code: str, parameter: str
) -> None:
    params = {
        "entity_ids": campaign_ids(x, 1)[0],
        "start_time": "2025-06-01T00:00:00+09:00",
        "end_time": "2025-06-08T00:00:00+09:00",
    }
    if change.get("entity") == "ACCOUNT":
        params["entity_ids"] = x.account.account_id
    response = x.stats(**{**params, **change})
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert (error["code"], error["parameter"]) == (code, parameter)


def test_the_account_entity_has_engagement_only_and_sums_every_campaign(x: XWorld) -> None:
    first = x.account.local_day() - timedelta(days=3)
    response = x.stats(
        entity="ACCOUNT",
        entity_ids=x.account.account_id,
        metric_groups="ENGAGEMENT",
        **window(first, 3),
    )
    metrics = response.json()["data"][0]["id_data"][0]["metrics"]
    assert "clicks" not in metrics and "billed_charge_local_micro" not in metrics
    truth = x.account.account_daily(first, first + timedelta(days=2))
    assert metrics["impressions"] == [
        truth[first + timedelta(days=n)].impressions for n in range(3)
    ]


def test_a_bare_date_is_midnight_in_the_accounts_time_zone(x: XWorld) -> None:
    ids = campaign_ids(x, 3)
    dated = x.stats(entity_ids=",".join(ids), start_time="2025-06-01", end_time="2025-06-08")
    params = dated.json()["request"]["params"]
    assert (params["start_time"], params["end_time"]) == (
        "2025-05-31T15:00:00Z",
        "2025-06-07T15:00:00Z",
    )
    timed = x.stats(entity_ids=",".join(ids), **window(date(2025, 6, 1), 7))
    assert dated.json()["data"] == timed.json()["data"]


def test_the_last_three_days_restate_and_older_ones_do_not(x: XWorld) -> None:
    today = x.account.local_day()
    ids = ",".join(campaign_ids(x, 20))
    query = window(today - timedelta(days=6), 7)
    before = x.stats(entity_ids=ids, **query).json()["data"]
    x.sandbox.clock.advance(hours=24)
    after = x.stats(entity_ids=ids, **query).json()["data"]

    def at(value: Any, n: int) -> Any:
        if isinstance(value, dict):
            return {k: at(v, n) for k, v in value.items()}
        return value[n] if isinstance(value, list) else value

    def day(data: list, n: int) -> list:
        return [at(e["id_data"][0]["metrics"], n) for e in data]

    assert day(before, 0) == day(after, 0)  # settled long ago
    assert day(before, 6) != day(after, 6)  # yesterday keeps changing


def test_day_buckets_are_24_hours_from_start_at_todays_offset() -> None:
    """Across a clock change the day buckets are not the local days: X counts 24 hours from
    start_time (the docs: use today's offset for day windows)."""
    sandbox = XSandbox(seed=2, start=datetime(2025, 12, 10, 12, tzinfo=UTC))
    sandbox.register_app(CONSUMER_KEY, CONSUMER_SECRET)
    account = sandbox.add_account("la1", time_zone="America/Los_Angeles", campaigns=8)
    grant = sandbox.authorize(CONSUMER_KEY, "la1")
    ids = [c.id for c in account.campaigns()][:8]
    with LoopbackServer(create_x_app(sandbox)) as server:
        world = XWorld(sandbox, server, grant, account)
        response = world.stats(
            entity_ids=",".join(ids),
            start_time="2025-10-31",
            end_time="2025-11-05",
            metric_groups="ENGAGEMENT",
        )
    start = datetime(2025, 10, 31, 8, tzinfo=UTC)  # midnight at today's (PST) offset
    assert response.json()["request"]["params"]["start_time"] == "2025-10-31T08:00:00Z"
    for entry in response.json()["data"]:
        impressions = entry["id_data"][0]["metrics"]["impressions"] or [0] * 5
        for n, value in enumerate(impressions):
            bucket = start + timedelta(days=n), start + timedelta(days=n + 1)
            figures = account.figures(entry["id"], *bucket)
            assert value == (figures.impressions if figures else 0)
