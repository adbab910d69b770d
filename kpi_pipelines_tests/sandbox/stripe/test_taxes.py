"""Tax included in the price: a price whose tax_behavior is inclusive (the customer's automatic
tax inside its amount) and manual tax rates (a subscription's default_tax_rates, an item's
tax_rates) that are inclusive. Invoices carry the amount with the tax in it, `taxes[]` with
tax_behavior inclusive (amount: the tax inside, taxable_amount: the net), total = subtotal;
the truth's MRR excludes the tax (kpi-definitions.md worked example 5: $120 including 20% VAT
on a $100 plan is MRR $100)."""

from __future__ import annotations

import pytest

from kpi_pipelines.sandbox.stripe.scenarios import (
    CouponSpec,
    CustomerScript,
    ItemScript,
    PriceSpec,
    SubscriptionScript,
    TaxRateSpec,
)
from kpi_pipelines_tests.sandbox.stripe.billing_helpers import (
    account,
    invoices,
    monthly,
    mrr,
    subscription,
)

INCLUSIVE_120 = PriceSpec(unit_amount=12_000, tax_behavior="inclusive")
SEATS = PriceSpec(unit_amount=1000, product="seats")


def _taxes(obj) -> list[tuple[int, str, int]]:
    key = "taxes" if obj["object"] == "line_item" else "total_taxes"
    return [(t["amount"], t["tax_behavior"], t["taxable_amount"]) for t in obj[key]]


def test_an_inclusive_price_counts_net_of_the_customers_tax() -> None:
    with account(SubscriptionScript(price=INCLUSIVE_120), now_days=40, tax=20.0) as served:
        assert mrr(served, 5) == 100.0
        assert mrr(served, 35) == 100.0
        item = subscription(served)["items"]["data"][0]
        assert item["price"]["tax_behavior"] == "inclusive"
        assert item["price"]["unit_amount"] == 12_000
        first, renewal = invoices(served)
        for inv in (first, renewal):
            [line] = inv["lines"]["data"]
            assert line["amount"] == 12_000
            assert _taxes(line) == [(2000, "inclusive", 10_000)]
            assert _taxes(inv) == [(2000, "inclusive", 10_000)]
            assert inv["subtotal"] == 12_000
            assert inv["total"] == 12_000  # the tax is inside: nothing added
            assert inv["subtotal_excluding_tax"] == 10_000
            assert inv["total_excluding_tax"] == 10_000
            assert inv["amount_due"] == inv["amount_paid"] == 12_000
            assert inv["status"] == "paid"
            [rate] = inv["total_taxes"]
            txr = served.ok(f"/v1/tax_rates/{rate['tax_rate_details']['tax_rate']}")
            assert txr["percentage"] == 20.0


def test_an_exclusive_price_adds_the_tax_on_top() -> None:
    with account(SubscriptionScript(price=monthly(100)), now_days=10, tax=20.0) as served:
        assert mrr(served, 5) == 100.0
        [inv] = invoices(served)
        assert _taxes(inv) == [(2000, "exclusive", 10_000)]
        assert (inv["subtotal"], inv["total"], inv["total_excluding_tax"]) == (
            10_000,
            12_000,
            10_000,
        )


def test_an_inclusive_default_tax_rate_on_the_subscription() -> None:
    sub = SubscriptionScript(
        price=monthly(120), default_tax_rates=[TaxRateSpec(20, inclusive=True)]
    )
    with account(sub, now_days=10) as served:
        assert mrr(served, 5) == 100.0
        got = subscription(served)
        [rate] = got["default_tax_rates"]
        assert rate["object"] == "tax_rate"
        assert rate["inclusive"] is True
        assert rate["percentage"] == 20.0
        assert got["items"]["data"][0]["tax_rates"] == []
        assert got["automatic_tax"]["enabled"] is False
        [inv] = invoices(served)
        [line] = inv["lines"]["data"]
        assert _taxes(line) == [(2000, "inclusive", 10_000)]
        assert line["taxes"][0]["tax_rate_details"]["tax_rate"] == rate["id"]
        assert inv["total"] == 12_000
        assert inv["total_excluding_tax"] == 10_000
        assert served.ok(f"/v1/tax_rates/{rate['id']}")["inclusive"] is True


def test_an_items_own_tax_rate_replaces_the_subscriptions() -> None:
    # $120 including 20% (the subscription's rate) + 3 seats at $10 with 10% on top (the item's
    # own): MRR 100 + 30 = $130; invoice 120 + 30 + 3 = $153.
    sub = SubscriptionScript(
        price=monthly(120),
        default_tax_rates=[TaxRateSpec(20, inclusive=True)],
        items=[ItemScript(SEATS, 3, tax_rates=[TaxRateSpec(10)])],
    )
    with account(sub, now_days=10) as served:
        assert mrr(served, 5) == 130.0
        got = subscription(served)
        plan, seats = got["items"]["data"]
        assert plan["tax_rates"] == []
        [own] = seats["tax_rates"]
        assert (own["percentage"], own["inclusive"]) == (10.0, False)
        [inv] = invoices(served)
        plan_line, seats_line = inv["lines"]["data"]
        assert _taxes(plan_line) == [(2000, "inclusive", 10_000)]
        assert _taxes(seats_line) == [(300, "exclusive", 3000)]
        assert _taxes(inv) == [(2000, "inclusive", 10_000), (300, "exclusive", 3000)]
        assert inv["subtotal"] == 15_000
        assert inv["total"] == 15_300
        assert inv["total_excluding_tax"] == 13_000


def test_an_inclusive_price_with_a_forever_coupon() -> None:
    # 25% off $120 including 20%: $90 paid, of which $15 tax; MRR $75.
    sub = SubscriptionScript(
        price=INCLUSIVE_120, coupon=CouponSpec(percent_off=25, duration="forever")
    )
    with account(sub, now_days=10, tax=20.0) as served:
        assert mrr(served, 5) == 75.0
        [inv] = invoices(served)
        [line] = inv["lines"]["data"]
        assert line["amount"] == 12_000
        assert [d["amount"] for d in line["discount_amounts"]] == [3000]
        assert _taxes(line) == [(1500, "inclusive", 7500)]
        assert inv["total"] == 9000
        assert inv["total_excluding_tax"] == 7500
        assert inv["subtotal_excluding_tax"] == 10_000


def test_manual_tax_rates_and_automatic_tax_do_not_mix() -> None:
    with pytest.raises(ValueError, match="not both"):
        CustomerScript(
            tax=20.0,
            subscriptions=[
                SubscriptionScript(price=monthly(10), default_tax_rates=[TaxRateSpec(20)])
            ],
        )
