"""Stripe through the real pipeline: sandbox over HTTP -> SDK -> raw records -> SQL metrics."""

from __future__ import annotations

import re
import time
from collections import defaultdict
from datetime import timedelta
from itertools import pairwise

import pytest
import sqlalchemy as sa

from kpi_pipelines.integrations.shared.engines import objects
from kpi_pipelines.warehouse.tenant_data import analyze_raw_records, read_points
from kpi_pipelines_tests.conftest import table_snapshot
from kpi_pipelines_tests.integrations.stripe.scripted_world import MOVEMENTS
from kpi_pipelines_tests.integrations.stripe.world import (
    rate_lookup,
    stored_series,
    stripe_key_variable,
)
from kpi_pipelines_tests.run_results import failure_message, metadata


@pytest.mark.parametrize(("currency", "tz"), [("USD", "UTC"), ("EUR", "America/New_York")])
def test_a_simulated_year_matches_the_sandbox_truth_every_day(stripe_world, currency, tz) -> None:
    world = stripe_world
    world.workspace("acme", currency, tz)
    world.import_rates(currency)
    result = world.sync("acme")
    assert result.success, failure_message(result)
    stored = stored_series(world.warehouse, "acme")
    convert = rate_lookup(world.sandbox, currency)
    first, last = world.sandbox.start.date(), world.sandbox.now.date() - timedelta(days=2)
    days = list(world.sandbox.truth.daily(first, last, tz))
    assert len(days) >= 364
    covered = set()
    for truth in days:
        d = truth.day
        expected_mrr = sum(convert(v, cur, d) for cur, v in truth.totals().items())
        assert stored["mrr"].get(d, 0.0) == pytest.approx(expected_mrr, abs=1e-4), d
        assert stored["active_customers"].get(d, 0) == len(truth.mrr), d
        moves = defaultdict(float)
        for m in truth.movements.values():
            moves[m.kind] += convert(m.amount, m.currency, d)
            covered.add(m.kind)
        for kind, metric in MOVEMENTS.items():
            assert stored[metric].get(d, 0.0) == pytest.approx(moves[kind], abs=1e-4), (d, kind)
        assert stored["new_customers"].get(d, 0) == sum(
            1 for m in truth.movements.values() if m.kind == "new"
        )
        assert stored["churned_customers"].get(d, 0) == sum(
            1 for m in truth.movements.values() if m.kind == "churn"
        )
    assert covered == set(MOVEMENTS), "the simulated year should exercise every movement"
    # Past the sandbox clock nothing is known to change: no renewal invoice exists yet, and a
    # live subscription must not look churned because its current period ends.
    now = world.sandbox.now
    at_now = sum(convert(v, cur, now.date()) for cur, v in world.sandbox.truth.mrr_at(now).values())
    # (Further out, trials that end and cancellations scheduled for later legitimately differ
    # from the state at the clock; the days right after it must not.)
    later = [d for d in stored["mrr"] if now.date() < d <= now.date() + timedelta(days=3)]
    assert later, "the series runs up to today"
    for d in later:
        assert stored["churned_customers"].get(d, 0) == 0, d
        assert stored["mrr"][d] == pytest.approx(
            sum(convert(v, cur, d) for cur, v in world.sandbox.truth.mrr_at(now).values()), abs=1e-4
        ), d
    assert at_now > 0


def test_cohort_ratios_match_the_sandbox_truth_every_day(stripe_world) -> None:
    """kpi-definitions.md: the cohort of day d is the customers paying on day d - 30; their
    churn, contraction, expansion and reactivation over days d-29..d, each at its day's rate."""
    world = stripe_world
    world.workspace("acme", "EUR", "America/New_York")
    world.import_rates("EUR")
    assert world.sync("acme").success
    stored = stored_series(world.warehouse, "acme")
    convert = rate_lookup(world.sandbox, "EUR")
    first, last = world.sandbox.start.date(), world.sandbox.now.date() - timedelta(days=2)
    days = list(world.sandbox.truth.daily(first, last, "America/New_York"))
    checked = 0
    for i in range(30, len(days)):
        before, window = days[i - 30], days[i - 29 : i + 1]
        cohort = set(before.mrr)
        d = days[i].day
        if not cohort:
            assert d not in stored["customer_churn_rate"], d
            continue
        moves: dict[str, float] = defaultdict(float)
        churned = set()
        for day in window:
            for customer, m in day.movements.items():
                if customer in cohort:
                    moves[m.kind] += convert(m.amount, m.currency, day.day)
                    if m.kind == "churn":
                        churned.add(customer)
        cohort_mrr = sum(convert(v, cur, before.day) for cur, v in before.mrr.values())
        assert stored["customer_churn_rate"][d] == pytest.approx(
            len(churned) / len(cohort), abs=1e-6
        ), d
        lost = moves["churn"] + moves["contraction"]
        won = moves["expansion"] + moves["reactivation"]
        assert stored["revenue_churn_rate"][d] == pytest.approx(lost / cohort_mrr, abs=1e-6), d
        assert stored["net_revenue_retention"][d] == pytest.approx(
            (cohort_mrr + won - lost) / cohort_mrr, abs=1e-6
        ), d
        checked += 1
    assert checked > 300
    assert any(v > 0 for v in stored["customer_churn_rate"].values())
    assert any(v > 1 for v in stored["net_revenue_retention"].values())


def test_mrr_identity_holds_every_day(stripe_world) -> None:
    world = stripe_world
    world.workspace("acme", "EUR", "Europe/Berlin")
    world.import_rates("EUR")
    assert world.sync("acme").success
    s = stored_series(world.warehouse, "acme")
    days = sorted(s["mrr"])
    assert any(abs(s["fx_adjustment_mrr"].get(d, 0)) > 0 for d in days)
    for previous, day in pairwise(days):
        expected = (
            s["mrr"][previous]
            + s["new_mrr"][day]
            + s["expansion_mrr"][day]
            + s["reactivation_mrr"][day]
            - s["contraction_mrr"][day]
            - s["churned_mrr"][day]
            + s["fx_adjustment_mrr"][day]
        )
        assert s["mrr"][day] == pytest.approx(expected, abs=1e-5), day  # values are stored to 1e-6


def test_revenue_refunds_and_net_match_the_sandbox(stripe_world) -> None:
    world = stripe_world
    world.workspace("acme")
    world.import_rates("USD")
    assert world.sync("acme").success
    s = stored_series(world.warehouse, "acme")
    convert = rate_lookup(world.sandbox, "USD")
    truth = world.sandbox.truth.revenue_daily(world.sandbox.start.date(), world.sandbox.now.date())
    expected: dict[str, dict] = defaultdict(lambda: defaultdict(float))
    for row in truth:
        expected["revenue"][row.day] += convert(row.revenue, row.currency, row.day)
        expected["refunds"][row.day] += convert(row.refunds, row.currency, row.day)
        expected["net_revenue"][row.day] += convert(row.net, row.currency, row.day)
    for metric in ("revenue", "refunds", "net_revenue"):
        days = {d for d, v in expected[metric].items() if v} | set(s[metric])
        assert days
        for day in days:
            assert s[metric].get(day, 0.0) == pytest.approx(expected[metric][day], abs=1e-4), (
                metric,
                day,
            )


def test_incremental_sync_after_changes_equals_a_full_resync(stripe_world) -> None:
    world = stripe_world
    world.workspace("inc")
    world.workspace("full")
    world.import_rates("USD")
    assert world.sync("inc").success
    world.sandbox.advance(timedelta(days=9))
    incremental = world.sync("inc")
    assert incremental.success
    assert metadata(incremental)["records_processed"] < world.sandbox.counts()["invoices"]
    assert world.sync("full").success  # a first sync: reads everything at the new clock
    with world.warehouse.tenant("inc", actor="t") as db:
        cursor = db.execute(
            sa.text("SELECT cursor FROM sync_state WHERE source = 'stripe'")
        ).scalar()
    assert cursor["mode"] == "incremental"

    def table(ws: str):
        return {
            (p.metric, p.timestamp, p.value)
            for p in read_points(world.warehouse, ws, source="stripe")
        }

    assert table("inc") == table("full")


def test_nothing_changed_ends_after_one_request(stripe_world) -> None:
    world = stripe_world
    world.workspace("acme")
    world.import_rates("USD")
    assert world.sync("acme").success
    again = world.sync("acme")
    assert again.success
    md = metadata(again)
    assert md["records_processed"] == 0 and md["points_written"] == 0


def test_cursor_older_than_thirty_days_falls_back_to_a_full_read(stripe_world) -> None:
    world = stripe_world
    world.workspace("acme")
    world.import_rates("USD")
    assert world.sync("acme").success
    world.sandbox.advance(timedelta(days=45))
    result = world.sync("acme")
    assert result.success
    with world.warehouse.tenant("acme", actor="t") as db:
        cursor = db.execute(
            sa.text("SELECT cursor FROM sync_state WHERE source = 'stripe'")
        ).scalar()
    assert cursor["mode"] == "full"


def test_canceled_subscriptions_are_landed(stripe_world) -> None:
    world = stripe_world
    world.workspace("acme")
    world.import_rates("USD")
    assert world.sync("acme").success
    with world.warehouse.tenant("acme", actor="t") as db:
        statuses = dict(
            db.execute(
                sa.text(
                    "SELECT payload->>'status', count(*) FROM raw_records"
                    " WHERE stream = 'subscriptions' GROUP BY 1"
                )
            ).all()
        )
        landed = sum(statuses.values())
    assert statuses.get("canceled", 0) > 0
    assert landed == world.sandbox.counts()["subscriptions"]


def test_a_429_storm_slows_the_sync_without_losing_or_duplicating(stripe_world) -> None:
    world = stripe_world
    world.workspace("calm")
    world.workspace("stormy")
    world.import_rates("USD")
    assert world.sync("calm").success
    world.sandbox.faults.storm(3, status=429, should_retry=True)
    stormy = world.sync("stormy", retry_backoff_seconds=0.001)
    assert stormy.success, failure_message(stormy)

    def table(ws: str):
        return {(p.metric, p.timestamp, p.value) for p in read_points(world.warehouse, ws)}

    assert table("calm") == table("stormy")
    with world.warehouse.tenant("stormy", actor="t") as db:
        landed_objects = sa.text(
            "SELECT count(*) FROM raw_records"
            " WHERE stream NOT IN ('subscription_events', 'subscription_states')"
        )
        assert db.execute(landed_objects).scalar() == sum(
            world.sandbox.counts()[k]
            for k in (
                "customers",
                "products",
                "prices",
                "coupons",
                "subscriptions",
                "invoices",
                "charges",
                "refunds",
                "balance_transactions",
            )
        )


def test_a_page_cut_short_on_the_way_is_asked_for_again(stripe_world) -> None:
    world = stripe_world
    world.workspace("calm")
    world.workspace("cut")
    world.import_rates("USD")
    assert world.sync("calm").success
    world.sandbox.faults.clear().truncate(2, after=1)  # the first list page, twice
    cut = world.sync("cut", retry_backoff_seconds=0.001)
    assert cut.success, failure_message(cut)
    assert world.sandbox.faults.injected == 2
    assert stored_series(world.warehouse, "cut") == stored_series(world.warehouse, "calm")
    assert landed_ids(world, "cut") == landed_ids(world, "calm")


def test_pages_that_stay_unreadable_fail_clearly_and_keep_what_was_stored(stripe_world) -> None:
    world = stripe_world
    world.workspace("acme")
    world.import_rates("USD")
    assert world.sync("acme").success
    world.sandbox.advance(timedelta(days=40))  # past event retention: a full read
    before = table_snapshot(world.warehouse)
    # the key check and the recent events pass, then every list page stays cut short (the
    # first lists are read at once: which of them fails first is theirs to say)
    world.sandbox.faults.clear().truncate(100, after=2)
    result = world.sync("acme", max_network_retries=2, retry_backoff_seconds=0.001)
    assert not result.success
    message = failure_message(result)
    assert "stripe is unavailable after 3 attempts" in message, message
    assert re.search(r"/v1/(customers|products|prices) sent a body we cannot read", message), (
        message
    )
    assert "retried later" in message
    after = table_snapshot(world.warehouse)
    for table in ("raw_records", "kpi_data"):
        assert after[table] == before[table], table


def landed_ids(world, workspace_id: str) -> set[tuple[str, str]]:
    with world.warehouse.tenant(workspace_id, actor="t") as db:
        return set(db.execute(sa.text("SELECT stream, record_id FROM raw_records")).all())


def test_a_provider_that_stays_down_fails_the_partition_clearly(stripe_world) -> None:
    world = stripe_world
    world.workspace("acme")
    world.sandbox.faults.down(503)
    result = world.sync("acme", max_network_retries=1, retry_backoff_seconds=0.001)
    assert not result.success
    message = failure_message(result)
    assert "stripe is unavailable" in message and "retried later" in message
    assert world.sandbox.api_key not in message


def test_a_wrong_key_says_reconnect(stripe_world, monkeypatch) -> None:
    world = stripe_world
    world.workspace("acme")
    monkeypatch.setenv(stripe_key_variable("acme"), "sk_test_wrong_key_123456")
    result = world.sync("acme")
    message = failure_message(result)
    assert "Reconnect this workspace" in message
    assert "sk_test_wrong_key_123456" not in message


def test_missing_fx_rate_names_currency_and_day(stripe_world) -> None:
    world = stripe_world
    world.workspace("acme", "USD")
    result = world.sync("acme")
    assert not result.success
    message = failure_message(result)
    assert "no exchange rate to USD for" in message and "fx import" in message


def test_workspace_isolation(stripe_world) -> None:
    world = stripe_world
    world.workspace("a")
    world.workspace("b")
    world.import_rates("USD")
    assert world.sync("a").success
    assert read_points(world.warehouse, "b") == []
    with world.warehouse.tenant("b", actor="t") as db:
        assert db.execute(sa.text("SELECT count(*) FROM raw_records")).scalar() == 0


def _raw_records_analyses(world) -> int:
    """ANALYZEs of raw_records asked for by a session (autovacuum's are counted apart)."""
    with world.warehouse.engine(None).connect() as admin:
        return int(
            admin.execute(
                sa.text(
                    "SELECT analyze_count FROM pg_stat_user_tables"
                    " WHERE relid = 'kpi.raw_records'::regclass"
                )
            ).scalar_one()
        )


def test_a_large_landing_refreshes_the_raw_tables_statistics_before_its_metrics(
    stripe_world, monkeypatch
) -> None:
    """Migration 0012: past the engine's threshold (lowered here to this small account's
    size) the sync ANALYZEs raw_records, through the owner's function, before the metrics;
    an unproved transaction may not."""
    world = stripe_world
    world.workspace("acme")
    world.import_rates("USD")
    monkeypatch.setattr(objects, "ANALYZE_AFTER_RECORDS", 100)
    before = _raw_records_analyses(world)
    result = world.sync("acme")
    assert result.success, failure_message(result)
    assert metadata(result)["records_processed"] > 100
    deadline = time.monotonic() + 15  # a backend reports its statistics within a second or so
    while _raw_records_analyses(world) == before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _raw_records_analyses(world) == before + 1
    with pytest.raises(sa.exc.DBAPIError), world.warehouse.unscoped_tenant() as db:
        analyze_raw_records(db)
