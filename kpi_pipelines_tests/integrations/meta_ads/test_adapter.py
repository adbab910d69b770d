"""Meta Ads through the real pipeline: the simulator over HTTP -> report runs -> kpi_data.

Every expected number is the simulated account's own truth (`truth_by_campaign_day`,
`truth_by_day`), never what the pipeline computed."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from kpi_pipelines.integrations.shared.ad_metrics import AD_METRICS
from kpi_pipelines.sandbox.kit.ads import WEB_PURCHASES, ConversionRule, ScriptedConversions
from kpi_pipelines.warehouse.control import FxRate, import_fx_rates
from kpi_pipelines.warehouse.tenant_data import read_points
from kpi_pipelines_tests.integrations.meta_ads.conftest import MetaWorld, expected
from kpi_pipelines_tests.run_results import failure_message, metadata

RECENT = {"history_days": 40}


def test_a_first_sync_stores_every_campaign_day_and_account_day(meta: MetaWorld) -> None:
    account = meta.workspace("acme", "1001")
    result = meta.sync("acme")
    assert result.success, failure_message(result)
    today = account.local_day()
    stored = meta.stored("acme")
    truth = expected(account, today - timedelta(days=89), today)  # history_days: 90
    assert stored.keys() == truth.keys()
    assert stored == pytest.approx(truth)
    shown = metadata(result)
    assert shown["report_jobs"] == 6 and shown["report_job_splits"] == 0  # 3 windows x 2
    assert shown["entities"] == {"campaigns": {"listed": 6, "changed": 6}}
    [spend] = [
        p
        for p in read_points(meta.warehouse, "acme", source="meta_ads", metric="ad_spend")
        if p.dimensions and p.timestamp.date() == today - timedelta(days=3)
    ][:1]
    named = {c.id: c.name for c in account.campaigns()}
    assert spend.metadata["campaign_name"] == named[spend.dimensions["campaign_id"]]
    assert spend.metadata["time_zone"] == "America/Los_Angeles"


def test_days_are_the_accounts_own_in_los_angeles_and_tokyo(meta: MetaWorld) -> None:
    meta.sandbox.clock.advance(hours=6)  # 18:00 UTC: Tokyo (03:00) is a day ahead of LA (11:00)
    la = meta.workspace("acme", "1001", account={"time_zone": "America/Los_Angeles"})
    tokyo = meta.workspace("globex", "1002", account={"time_zone": "Asia/Tokyo"})
    assert tokyo.local_day() == la.local_day() + timedelta(days=1)
    for workspace, account in (("acme", la), ("globex", tokyo)):
        assert meta.sync(workspace, RECENT).success
        today = account.local_day()
        stored = meta.stored(workspace)
        assert stored == pytest.approx(expected(account, today - timedelta(days=39), today))
        assert max(day for _, day, _ in stored) == today


def audited(meta: MetaWorld, workspace: str) -> list[sa.Row]:
    with meta.warehouse.tenant(workspace, actor="test") as db:
        return db.execute(
            sa.text('SELECT action, metric, "timestamp", dimensions_key, actor FROM audit_log')
        ).all()


def test_restated_days_change_with_audit_rows_and_unchanged_days_write_nothing(
    meta: MetaWorld,
) -> None:
    account = meta.workspace("acme", "1001")
    assert meta.sync("acme", RECENT).success
    first_today = account.local_day()
    before = meta.stored("acme")
    inserts = len(audited(meta, "acme"))
    assert inserts == len(before)

    again = meta.sync("acme")  # nothing moved: the 28 days read again write nothing
    assert metadata(again)["points_written"] == 0 and len(audited(meta, "acme")) == inserts

    meta.sandbox.clock.advance(hours=36)  # conversions keep arriving, credits come back
    result = meta.sync("acme")
    assert result.success
    today = account.local_day()
    after = meta.stored("acme")
    assert after == pytest.approx(expected(account, first_today - timedelta(days=39), today))
    changed = {k for k in before if before[k] != pytest.approx(after[k])}
    new = after.keys() - before.keys()
    assert changed and all(day >= first_today - timedelta(days=28) for _, day, _ in changed)
    rows = audited(meta, "acme")[inserts:]
    updates = {
        (r.metric, r.timestamp.date(), json.loads(r.dimensions_key or "{}").get("campaign_id"))
        for r in rows
        if r.action == "update"
    }
    assert updates == changed  # one audit row per changed value, none for the others
    assert len([r for r in rows if r.action == "insert"]) == len(new)
    assert all(r.actor.startswith("run:") for r in rows)
    # Only the cursor's day minus the 28-day lookback was asked for again.
    assert metadata(result)["records_processed"] <= (28 + 3) * 7 + 6


def test_worked_examples_9_and_10(meta: MetaWorld) -> None:
    account = meta.workspace("acme", "1001", account={"campaigns": 0})
    day = account.local_day() - timedelta(days=2)
    a = account.add_campaign("A", start=day - timedelta(days=5), daily_budget=0)
    b = account.add_campaign("B", start=day - timedelta(days=5), daily_budget=0)
    sale = ScriptedConversions("purchase", 40, "2000", "web")
    account.script_day(a, day, spend=500, impressions=100_000, clicks=1_250, conversions=[sale])
    account.script_day(a, day - timedelta(days=1), spend="5", impressions=1_000, clicks=10)
    account.script_day(b, day - timedelta(days=1), spend="1", impressions=10, clicks=1)
    account.script_day(b, day, spend=0, impressions=50, clicks=0)  # a free day: no cost ratios
    assert meta.sync("acme", RECENT).success
    stored = meta.stored("acme")
    nine = {m: stored[(m, day, a)] for m in ("ctr", "cpc", "cpm", "roas", "conversions")}
    assert nine == pytest.approx(
        {"ctr": 0.0125, "cpc": 0.40, "cpm": 5.00, "roas": 4.0, "conversions": 40}
    )
    # Example 10: the account's CTR over its campaigns is 11/1,010, not the mean of 0.01 and 0.1.
    assert stored[("ctr", day - timedelta(days=1), None)] == pytest.approx(11 / 1010)
    assert stored[("ctr", day - timedelta(days=1), None)] == pytest.approx(0.01089, abs=1e-5)
    # No point where the denominator is 0: B's free day has no CPC and no ROAS.
    assert {m for m, d, c in stored if (d, c) == (day, b)} == set(AD_METRICS) - {"cpc", "roas"}


def test_conversions_are_the_connections_action_types_never_their_sum(meta: MetaWorld) -> None:
    default = meta.workspace("acme", "1001")
    web = meta.workspace(
        "globex", "1002", settings={"conversions": ["offsite_conversion.fb_pixel_purchase"]}
    )
    legacy = meta.workspace("initech", "1003", account={"omni": False})
    rules = {
        "acme": (default, None),
        "globex": (web, WEB_PURCHASES),
        "initech": (legacy, ConversionRule(channels=frozenset({"web", "app", "offline"}))),
    }
    for workspace, (account, rule) in rules.items():
        assert meta.sync(workspace, RECENT).success
        today = account.local_day()
        truth = expected(
            account, today - timedelta(days=39), today, **({"rule": rule} if rule else {})
        )
        stored = meta.stored(workspace)
        for metric in ("conversions", "conversion_value", "roas"):
            picked = {k: v for k, v in truth.items() if k[0] == metric}
            assert {k: stored[k] for k in picked} == pytest.approx(picked), (workspace, metric)


def test_money_in_the_reporting_currency_with_the_days_rate(meta: MetaWorld) -> None:
    account = meta.workspace(
        "globex",
        "1002",
        reporting_currency="EUR",
        account={"currency": "JPY", "time_zone": "Asia/Tokyo"},
    )
    today = account.local_day()
    days = [today - timedelta(days=n) for n in range(40)]
    rate = {day: 0.006 + n / 100_000 for n, day in enumerate(days)}
    missing = days[5]
    import_fx_rates(
        meta.warehouse,
        [FxRate(day=d, base="JPY", quote="EUR", rate=r) for d, r in rate.items() if d != missing],
    )
    failed = meta.sync("globex", RECENT)
    assert not failed.success
    assert f"no exchange rate to EUR for JPY on {missing.isoformat()}" in failure_message(failed)
    stored = meta.stored("globex")
    assert stored and all(day < today - timedelta(days=8) for _, day, _ in stored)  # first window

    import_fx_rates(
        meta.warehouse, [FxRate(day=missing, base="JPY", quote="EUR", rate=rate[missing])]
    )
    assert meta.sync("globex").success
    truth = expected(account, today - timedelta(days=39), today)
    money = {"ad_spend", "conversion_value", "cpc", "cpm"}
    converted = {k: v * rate[k[1]] if k[0] in money else v for k, v in truth.items()}
    assert meta.stored("globex") == pytest.approx(converted)
    [point] = [
        p
        for p in read_points(meta.warehouse, "globex", source="meta_ads", metric="ad_spend")
        if not p.dimensions and p.timestamp.date() == today - timedelta(days=1)
    ]
    assert point.metadata["currency"] == "JPY"
    assert point.metadata["amount"] == float(truth[("ad_spend", today - timedelta(days=1), None)])


def test_an_archived_campaign_keeps_its_name_on_its_past_days(meta: MetaWorld) -> None:
    account = meta.workspace("acme", "1001")
    yesterday = account.local_day() - timedelta(days=1)
    [(delivered, _), *_] = account.daily(yesterday, yesterday)
    gone = account.campaign(delivered)
    account.set_status(gone.id, "archived")  # Meta lists it only when asked for ARCHIVED ones
    assert meta.sync("acme", RECENT).success
    points = [
        p
        for p in read_points(meta.warehouse, "acme", source="meta_ads", metric="ad_spend")
        if p.dimensions.get("campaign_id") == gone.id
    ]
    assert points and all(p.metadata["campaign_name"] == gone.name for p in points)
    assert {p.metadata["campaign_status"] for p in points} == {"ARCHIVED"}
