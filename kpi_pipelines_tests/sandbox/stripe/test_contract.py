"""THE CONTRACT: MRR history rebuilt from served objects equals the generator's truth.

`reference.py` rebuilds each subscription's MRR at any instant from the JSON the API serves
(section 2 of the contract); the truth comes from the generator's internal timeline. They
must agree for every customer at the end of every day of the simulated year.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import date, timedelta

import pytest

from kpi_pipelines.sandbox.stripe import MIX_CASES, StripeSandbox, end_of_day, fx_rates
from kpi_pipelines.sandbox.stripe.catalog import Price, Tier
from kpi_pipelines.sandbox.stripe.generator import item_mrr
from kpi_pipelines_tests.sandbox.stripe.conftest import Served, serve
from kpi_pipelines_tests.sandbox.stripe.reference import reconstruct


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_history_rebuilt_from_served_objects_equals_the_truth(seed: int) -> None:
    sandbox = StripeSandbox(seed=seed, customers=70)
    for served in serve(sandbox):
        customers, mrr_at = reconstruct(served.ok)
    assert len(customers) == 70
    day = sandbox.start.date()
    checked = positive = 0
    while day < sandbox.now.date():
        t = end_of_day(day)
        truth = sandbox.truth.mrr_at(t)
        rebuilt = mrr_at(t)
        assert set(rebuilt) == set(truth), day
        for cid, (currency, value) in truth.items():
            got_currency, got = rebuilt[cid]
            assert math.isclose(got, value, rel_tol=1e-9, abs_tol=1e-6), (day, cid, got, value)
            if value > 0:
                assert got_currency == currency
                positive += 1
            checked += 1
        day += timedelta(days=1)
    assert checked > 10_000 and positive > 5_000


@pytest.fixture(scope="module")
def wide() -> StripeSandbox:
    return StripeSandbox(seed=1, customers=300)


def test_the_mix_covers_every_case(wide: StripeSandbox) -> None:
    tags: Counter[str] = Counter()
    for cs in wide.customers():
        tags.update(cs.tags)
    missing = [case for case in MIX_CASES if not tags[case]]
    assert missing == []


def test_the_cases_are_visible_in_served_objects(wide: StripeSandbox) -> None:
    for served in serve(wide):
        _check_served_cases(served)


def _check_served_cases(served: Served) -> None:
    prices = {p["id"]: p for p in served.all("/v1/prices", {"expand[]": "data.tiers"})}
    subs = served.all(
        "/v1/subscriptions", {"status": "all", "expand[]": "data.discounts.source.coupon"}
    )
    invoices = served.all("/v1/invoices")
    charges = served.all("/v1/charges")
    used = [prices[i["price"]["id"]] for s in subs for i in s["items"]["data"]]
    intervals = {(p["recurring"]["interval"], p["recurring"]["interval_count"]) for p in used}
    assert {("month", 1), ("year", 1), ("week", 1), ("month", 3), ("month", 6)} <= intervals
    assert {p["tiers_mode"] for p in used} >= {"graduated", "volume"}
    assert any(p["recurring"]["usage_type"] == "metered" for p in used)
    assert any((i["quantity"] or 0) > 1 for s in subs for i in s["items"]["data"])
    coupons = {
        (d["source"]["coupon"]["duration"], d["source"]["coupon"]["amount_off"] is None)
        for s in subs
        for d in s["discounts"]
    }
    assert {("forever", True), ("forever", False)} <= coupons
    statuses = Counter(s["status"] for s in subs)
    assert statuses["active"] and statuses["canceled"]
    assert any(s["trial_start"] for s in subs)
    assert any(s["cancel_at_period_end"] for s in subs)
    assert any(s["cancellation_details"]["reason"] == "payment_failed" for s in subs)
    reasons = Counter(i["billing_reason"] for i in invoices)
    assert (
        reasons["subscription_create"]
        and reasons["subscription_cycle"]
        and reasons["subscription_update"]
    )
    assert any(i["status_transitions"]["marked_uncollectible_at"] for i in invoices)
    assert any(
        i["status_transitions"]["marked_uncollectible_at"] and i["status_transitions"]["paid_at"]
        for i in invoices
    )
    assert any(i["total_taxes"] for i in invoices)
    assert any(i["total_discount_amounts"] for i in invoices)
    lines = [line for i in invoices for line in i["lines"]["data"]]
    credits = [line for line in lines if line["amount"] < 0]
    assert credits and all(
        line["parent"]["subscription_item_details"]["proration"] for line in credits
    )
    assert any(c["status"] == "failed" for c in charges)
    refunded = [c for c in charges if c["amount_refunded"]]
    assert any(c["refunded"] for c in refunded) and any(not c["refunded"] for c in refunded)
    assert any(i["starting_balance"] < 0 for i in invoices)
    currencies = {s["currency"] for s in subs}
    assert currencies == {"usd", "eur", "gbp", "jpy"}


def test_a_removed_item_has_only_a_credit_from_its_removal(wide: StripeSandbox) -> None:
    """Removal mid-period: a credit line [t, period end) and no later non-credit line.

    The original period line still covers [t, period end), so a reconstruction must read
    "the greatest period.start among the lines covering T, and no non-credit line there"
    as "removed" (reference.py does), not merely ignore credits.
    """
    cs = next(c for c in wide.customers() if "item_removed" in c.tags)
    removed = next(i for s in cs.subs for i in s.items if i.removed_at is not None)
    sub = cs.subs[removed.sub]
    lines = [(inv, line) for inv in sub.invoices for line in inv.lines if line.item is removed]
    t = removed.removed_at
    credit = [line for _, line in lines if line.start == t]
    assert len(credit) == 1 and credit[0].amount < 0 and credit[0].proration
    assert not [line for _, line in lines if line.amount >= 0 and line.start >= t]
    assert [line for _, line in lines if line.amount >= 0 and line.start < t <= line.end]


def test_worked_examples_of_the_kpi_definitions() -> None:
    def price(amount: int, interval: str, count: int = 1, tiers=None, mode=None) -> Price:
        return Price(
            idx=0,
            key="k",
            id="price_x",
            product=None,
            currency="usd",  # type: ignore[arg-type]
            interval=interval,
            interval_count=count,
            usage_type="licensed",
            billing_scheme="tiered" if tiers else "per_unit",
            tiers_mode=mode,
            tiers=tiers,
            unit_amount=None if tiers else amount,
            created=0,
            nickname="",
            family=None,
            rank=0,
        )

    assert item_mrr(price(120_000, "year"), 1) * 0.8 == pytest.approx(8_000)  # $80
    assert item_mrr(price(9_000, "month", 3), 1) == pytest.approx(3_000)
    assert item_mrr(price(12_000, "month", 6), 1) == pytest.approx(2_000)
    assert item_mrr(price(1_000, "week"), 1) == pytest.approx(4_333.333, abs=1e-3)
    assert 100 * item_mrr(price(10_000, "month"), 1) + 50 * item_mrr(
        price(60_000, "year"), 1
    ) == pytest.approx(1_250_000)
    graduated = (Tier(5, 1500, 2000), Tier(20, 1200, 0), Tier(None, 900, 0))
    # 5 x 15 + 2000 flat, 15 x 12, 5 x 9 = 7500 + 2000 + 18000 + 4500
    assert item_mrr(price(0, "month", tiers=graduated, mode="graduated"), 25) == 32_000
    volume = (Tier(10, 2000, 0), Tier(50, 1700, 5000), Tier(None, 1500, 10000))
    assert item_mrr(price(0, "month", tiers=volume, mode="volume"), 25) == 25 * 1700 + 5000


def test_daily_truth_movements_add_up(wide: StripeSandbox) -> None:
    start = wide.start.date()
    # The clock is 2026-01-01 00:00 UTC, i.e. 2025-12-31 19:00 in New York: 364 whole days.
    days = list(wide.truth.daily(start, start + timedelta(days=363), tz="America/New_York"))
    assert len(days) == 364
    prev: dict[str, float] = {}
    kinds: Counter[str] = Counter()
    for day in days:
        totals = day.totals()
        moves = day.movement_totals()
        for currency in set(totals) | set(prev):
            expected = prev.get(currency, 0.0)
            for (kind, cur), amount in moves.items():
                if cur == currency:
                    expected += -amount if kind in ("contraction", "churn") else amount
            assert totals.get(currency, 0.0) == pytest.approx(expected, abs=1e-6)
        kinds.update(m.kind for m in day.movements.values())
        prev = totals
    assert set(kinds) == {"new", "expansion", "contraction", "churn", "reactivation"}
    end = days[-1]
    t = end_of_day(end.day, "America/New_York")
    assert {c: v for c, v in wide.truth.mrr_at(t).items() if v[1] > 0} == end.mrr


def test_revenue_truth_matches_served_money(wide: StripeSandbox) -> None:
    rows = wide.truth.revenue_daily(date(2025, 1, 1), date(2025, 12, 31))
    revenue: Counter[str] = Counter()
    refunds: Counter[str] = Counter()
    net: Counter[str] = Counter()
    for row in rows:
        revenue[row.currency] += row.revenue
        refunds[row.currency] += row.refunds
        net[row.currency] += row.net
    for served in serve(wide):
        charges = served.all("/v1/charges")
        served_refunds = served.all("/v1/refunds")
        bts = served.all("/v1/balance_transactions")
    assert revenue == Counter({c: 0 for c in revenue}) + Counter(
        {
            cur: sum(
                ch["amount_captured"]
                for ch in charges
                if ch["currency"] == cur and ch["status"] == "succeeded"
            )
            for cur in revenue
        }
    )
    assert sum(refunds.values()) == sum(r["amount"] for r in served_refunds)
    assert sum(net.values()) == sum(b["net"] for b in bts)
    assert all(b["net"] == b["amount"] - b["fee"] for b in bts)


def test_fx_rates_are_deterministic_and_move() -> None:
    rates = fx_rates(1, ("usd", "eur", "gbp", "jpy"), date(2025, 1, 1), date(2025, 1, 31))
    assert rates == fx_rates(1, ("usd", "eur", "gbp", "jpy"), date(2025, 1, 1), date(2025, 1, 31))
    assert len(rates) == 31 * 12
    eur = [r for r in rates if r[1] == "eur" and r[2] == "usd"]
    assert len({r[3] for r in eur}) == 31
    assert all(0.9 < r[3] < 1.3 for r in eur)
    by_key = {(d, b, q): v for d, b, q, v in rates}
    for (d, b, q), v in by_key.items():
        assert by_key[(d, q, b)] == pytest.approx(1 / v)
    jan15 = fx_rates(1, ("usd", "eur"), date(2025, 1, 15), date(2025, 1, 15))
    assert jan15[0][3] == by_key[(date(2025, 1, 15), "usd", "eur")]
