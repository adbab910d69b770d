"""The random business with StripeSandboxConfig(billing_variety=True): a simulated year holds
each billing behaviour of the scripted vocabulary and each field that changes what Stripe
bills, and its truth agrees with itself (the MRR
identity every day) and with what is served (a customer has MRR exactly when one of its
subscriptions has a counted status and is not 100% off)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest

from kpi_pipelines.sandbox.stripe import StripeSandbox
from kpi_pipelines.sandbox.stripe.generator import Generator, StripeSandboxConfig
from kpi_pipelines.sandbox.stripe.variety import VarietyGenerator
from kpi_pipelines_tests.sandbox.stripe.conftest import Served, serve

# 400 customers with seed 5 hold every behaviour (the variety is random: not every seed does).
CONFIG = StripeSandboxConfig(seed=5, customers=400, billing_variety=True)

BEHAVIOURS = {
    "incomplete_expired",  # a first payment that failed and expired
    "incomplete_then_active",
    "retries_exhausted_canceled",
    "retries_exhausted_past_due",
    "unpaid_invoice_open",  # unpaid with its invoice left open
    "unpaid",
    "past_due_recovered",
    "trial_paused",
    "resumed",
    "pending_prorations",  # create_prorations
    "proration_none",
    "item_discount",
    "several_discounts",
    "variety_free",  # a 100%-off forever coupon
    "tax_inclusive",
    "pause_collection_void",
    "pause_collection_mark_uncollectible",
    "invoice_keep_as_draft",
    "collection_resumed",
    "invoice_draft_renewal",
    "anchor_reset",
    "subscription_schedule",
    "subscription_schedule_released",
    # what a price or coupon bills
    "package_pricing",  # transform_quantity
    "decimal_amount",  # unit_amount_decimal, per unit and in tiers
    "currency_option",  # a subscription billed a price's currency option
    "coupon_currency_option",
    "coupon_applies_to",
    "variety_inclusive_amount_off",
    "invoice_discount",  # a coupon on one invoice only
}


@pytest.fixture(scope="module")
def varied() -> Iterator[Served]:
    yield from serve(StripeSandbox(CONFIG))


def _tags(sandbox: StripeSandbox) -> list[set[str]]:
    n = sandbox.generator.customer_count(sandbox.config.now_ts)
    return [sandbox.sim(ci).tags for ci in range(n)]


def test_the_flag_is_off_by_default() -> None:
    assert StripeSandboxConfig().billing_variety is False
    assert type(StripeSandbox(StripeSandboxConfig(customers=5)).generator) is Generator
    assert isinstance(StripeSandbox(CONFIG).generator, VarietyGenerator)


def test_a_varied_year_holds_each_behaviour(varied: Served) -> None:
    seen = Counter(tag for tags in _tags(varied.sandbox) for tag in tags)
    assert BEHAVIOURS - set(seen) == set()
    variety = sum(n for tag, n in seen.items() if tag.startswith("variety_"))
    assert 0.2 < variety / len(_tags(varied.sandbox)) < 0.45  # modest: about a third


def test_the_customers_without_a_script_are_the_default_businesses() -> None:
    plain = StripeSandbox(StripeSandboxConfig(seed=5, customers=400))
    varied = StripeSandbox(CONFIG)
    for ci in range(40):
        a, b = plain.sim(ci), varied.sim(ci)
        if not any(t.startswith("variety_") for t in b.tags):
            assert a.tags == b.tags
            assert [i.total for i in a.invoices] == [i.total for i in b.invoices]


def test_the_mrr_identity_holds_every_day(varied: Served) -> None:
    sandbox = varied.sandbox
    start = sandbox.config.start.date()
    end = sandbox.config.now.date() - timedelta(days=1)
    prev: dict[str, float] = {}
    for day in sandbox.truth.daily(start, end):
        totals = day.totals()
        moves = day.movement_totals()
        for cur in set(totals) | set(prev):
            expected = (
                prev.get(cur, 0.0)
                + moves.get(("new", cur), 0.0)
                + moves.get(("reactivation", cur), 0.0)
                + moves.get(("expansion", cur), 0.0)
                - moves.get(("contraction", cur), 0.0)
                - moves.get(("churn", cur), 0.0)
            )
            assert totals.get(cur, 0.0) == pytest.approx(expected, abs=1e-6), (day.day, cur)
        prev = totals


def test_the_truth_agrees_with_the_served_subscriptions(varied: Served) -> None:
    sandbox = varied.sandbox
    now = sandbox.config.now_ts
    statuses: Counter[str] = Counter()
    for ci, tags in enumerate(_tags(sandbox)):
        if not any(t.startswith("variety_") for t in tags):
            continue
        cid = sandbox.customer_id(ci)
        subs = varied.all("/v1/subscriptions", {"customer": cid, "status": "all"})
        counted = [s for s in subs if s["status"] in ("active", "past_due")]
        mrr = sandbox.truth.customer_mrr_at(ci, now)
        if mrr > 0:
            assert counted, (cid, [s["status"] for s in subs])
        elif "variety_free" not in tags:
            assert not counted, (cid, [s["status"] for s in subs])
        for s in subs:
            if s["pause_collection"] is not None and s["ended_at"] is None:
                assert s["status"] == "active"
                assert mrr > 0
        for inv in varied.all("/v1/invoices", {"customer": cid}):
            statuses[inv["status"]] += 1
    assert {"draft", "open", "paid", "uncollectible", "void"} <= set(statuses)
