"""Discounts beyond one coupon per subscription: 100% off forever, a discount on one
subscription item, and several discounts on one subscription. Stripe applies them one after
the other (the items' own, then the subscription's, in the order added), each to what the
ones before left; the truth's MRR follows the same order with forever coupons only."""

from __future__ import annotations

from kpi_pipelines.sandbox.stripe.scenarios import (
    AddCoupon,
    CouponSpec,
    ItemScript,
    PriceSpec,
    SubscriptionScript,
    as_event,
)
from kpi_pipelines_tests.sandbox.stripe.billing_helpers import (
    account,
    invoices,
    monthly,
    mrr,
    subscription,
)

SEATS = PriceSpec(unit_amount=1000, product="seats")  # $10 a seat a month


def _discount_amounts(line) -> list[int]:
    return [d["amount"] for d in line["discount_amounts"]]


def test_a_100_percent_forever_coupon_makes_zero_mrr_and_free_invoices() -> None:
    sub = SubscriptionScript(
        price=monthly(50), coupon=CouponSpec(percent_off=100, duration="forever")
    )
    with account(sub, now_days=40) as served:
        assert mrr(served, 10) == 0.0
        assert mrr(served, 35) == 0.0
        first, renewal = invoices(served)
        for inv in (first, renewal):
            assert inv["subtotal"] == 5000
            assert inv["total"] == 0
            assert inv["amount_due"] == 0
            assert inv["status"] == "paid"
        assert subscription(served)["status"] == "active"
        assert served.all("/v1/charges") == []  # nothing to charge


def test_a_discount_on_one_item_reduces_that_item_only() -> None:
    # $50 plan + 3 seats at $10 with 50% off the seats forever: 50 + 30 x 0.5 = $65.
    sub = SubscriptionScript(
        price=monthly(50),
        items=[ItemScript(SEATS, 3, coupon=CouponSpec(percent_off=50, duration="forever"))],
    )
    with account(sub, now_days=10) as served:
        assert mrr(served, 5) == 65.0
        got = subscription(served)
        assert got["discounts"] == []
        plan, seats = got["items"]["data"]
        assert plan["discounts"] == []
        [disc_id] = seats["discounts"]
        disc = served.ok(f"/v1/subscriptions/{got['id']}", {"expand[]": "discounts"})
        assert disc["discounts"] == []
        [inv] = invoices(served)
        plan_line, seats_line = inv["lines"]["data"]
        assert _discount_amounts(plan_line) == []
        assert _discount_amounts(seats_line) == [1500]
        assert seats_line["discounts"] == [disc_id]
        assert inv["discounts"] == []
        assert inv["total"] == 6500


def test_several_discounts_apply_one_after_the_other() -> None:
    # $100 with 20% off forever, then $10 off forever: 100 x 0.8 - 10 = $70 (not 100 - 10 x ...).
    sub = SubscriptionScript(
        price=monthly(100),
        coupon=CouponSpec(percent_off=20, duration="forever"),
        coupons=[CouponSpec(amount_off=1000, duration="forever")],
    )
    with account(sub, now_days=10) as served:
        assert mrr(served, 5) == 70.0
        got = subscription(served)
        assert len(got["discounts"]) == 2
        [inv] = invoices(served)
        [line] = inv["lines"]["data"]
        assert _discount_amounts(line) == [2000, 1000]
        assert [d["amount"] for d in inv["total_discount_amounts"]] == [2000, 1000]
        assert inv["total"] == 7000


def test_two_percent_coupons_compound() -> None:
    # 20% then 10% off $100: 100 x 0.8 x 0.9 = $72, not $70.
    sub = SubscriptionScript(
        price=monthly(100),
        coupon=CouponSpec(percent_off=20, duration="forever"),
        events=[AddCoupon(10.5, CouponSpec(percent_off=10, duration="forever"))],
    )
    with account(sub, now_days=40) as served:
        assert mrr(served, 10) == 80.0
        assert mrr(served, 11) == 72.0
        renewal = invoices(served)[-1]
        [line] = renewal["lines"]["data"]
        assert _discount_amounts(line) == [2000, 800]
        assert renewal["total"] == 7200


def test_only_forever_discounts_count_among_several() -> None:
    # A once 50% coupon beside a forever 10%: the first invoice gets both, MRR only the 10%.
    sub = SubscriptionScript(
        price=monthly(100),
        coupon=CouponSpec(percent_off=50, duration="once"),
        coupons=[CouponSpec(percent_off=10, duration="forever")],
    )
    with account(sub, now_days=40) as served:
        assert mrr(served, 5) == 90.0
        first, renewal = invoices(served)
        assert first["total"] == 4500  # 100 x 0.5 x 0.9
        assert renewal["total"] == 9000


def test_an_item_discount_added_later_and_its_tuple_spelling() -> None:
    coupon = CouponSpec(amount_off=500, duration="forever")
    assert as_event(("coupon", 5, coupon, 1)) == AddCoupon(5, coupon, item=1)
    sub = SubscriptionScript(
        price=monthly(50), items=[ItemScript(SEATS, 2)], events=[("coupon", 5.5, coupon, 1)]
    )
    with account(sub, now_days=40) as served:
        assert mrr(served, 5) == 70.0
        assert mrr(served, 6) == 65.0  # $5 off the seats
        renewal = invoices(served)[-1]
        plan_line, seats_line = renewal["lines"]["data"]
        assert _discount_amounts(plan_line) == []
        assert _discount_amounts(seats_line) == [500]


def test_a_customer_credit_balance_pays_part_of_the_next_invoices() -> None:
    # A $70 credit (balance -7000) and $50 a month: January is free (-$20 left), February
    # costs $30; the credit is not revenue and does not change the MRR.
    sub = SubscriptionScript(price=monthly(50))
    with account(sub, now_days=40, balance=-7000) as served:
        assert mrr(served, 5) == 50.0
        first, renewal = invoices(served)
        assert (first["starting_balance"], first["ending_balance"]) == (-7000, -2000)
        assert (first["total"], first["amount_due"]) == (5000, 0)
        assert (renewal["starting_balance"], renewal["ending_balance"]) == (-2000, 0)
        assert (renewal["total"], renewal["amount_due"]) == (5000, 3000)
        assert served.ok(f"/v1/customers/{first['customer']}")["balance"] == 0
    with account(sub, now_days=10, balance=-7000) as served:
        [first] = invoices(served)
        assert served.ok(f"/v1/customers/{first['customer']}")["balance"] == -2000
