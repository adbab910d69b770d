"""The worked examples of kpi-definitions.md (Stripe), each through the real pipeline.

A scripted sandbox (kpi_pipelines.sandbox.stripe.scenarios) is served over HTTP, read by the
adapter with the official SDK, landed in raw_records, computed by the SQL metrics and stored
in kpi_data (the `sync` fixture of scripted_world.py); each test asserts the stored values
on the days the script makes them happen. Every sync is also checked against the sandbox's
own truth for every simulated day.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from kpi_pipelines.sandbox.stripe import StripeSandbox, end_of_day
from kpi_pipelines.sandbox.stripe.scenarios import (
    AddCoupon,
    AddItem,
    Cancel,
    Change,
    CouponSpec,
    ItemScript,
    MarkUnpaid,
    PaymentFails,
    PaymentSucceeds,
    PriceSpec,
    RemoveItem,
    ScriptedSandbox,
    SubscriptionScript,
)
from kpi_pipelines_tests.integrations.stripe.scripted_world import (
    NOW,
    START,
    WORKSPACE,
    day,
    every_day,
    money,
    monthly,
    subscriber,
)

YEARLY_1200 = PriceSpec(unit_amount=120_000, interval="year")


def test_example_1_a_yearly_plan_with_a_20_percent_forever_coupon_is_80_a_month(sync) -> None:
    s = sync(subscriber(SubscriptionScript(price=YEARLY_1200, coupon=CouponSpec(percent_off=20))))
    assert s.money("mrr", 0) == money(80.0)
    assert s.money("new_mrr", 0) == money(80.0)
    assert s.value("new_customers", 0) == 1
    assert s.money("revenue", 0) == money(960.0)  # the coupon took 20% off the invoice too
    assert every_day(s, "mrr", 0, 119) == {80.0}


def test_example_2_the_same_plan_with_a_once_coupon_is_100_a_month(sync) -> None:
    once = CouponSpec(percent_off=20, duration="once")
    s = sync(subscriber(SubscriptionScript(price=YEARLY_1200, coupon=once)))
    assert s.money("revenue", 0) == money(960.0)  # the first invoice is discounted...
    assert s.money("mrr", 0) == money(100.0)  # ...but the recurring revenue is not
    assert s.money("new_mrr", 0) == money(100.0)
    assert every_day(s, "mrr", 0, 119) == {100.0}


def test_example_3_quarterly_and_half_yearly_plans(sync) -> None:
    s = sync(
        subscriber(SubscriptionScript(price=PriceSpec(9_000, "month", interval_count=3))),
        subscriber(
            SubscriptionScript(price=PriceSpec(12_000, "month", interval_count=6)), created=1
        ),
    )
    assert s.money("mrr", 0) == money(30.0)  # $90 every 3 months
    assert s.money("new_mrr", 1) == money(20.0)  # $120 every 6 months
    assert s.money("mrr", 1) == money(50.0)
    assert s.money("revenue", 90) == money(90.0)  # the quarterly renewal on April 1st...
    assert every_day(s, "mrr", 1, 119) == {50.0}  # ...changes nothing


def test_example_4_a_weekly_plan_uses_52_over_12(sync) -> None:
    s = sync(subscriber(SubscriptionScript(price=PriceSpec(1_000, "week"))))
    assert s.money("mrr", 0) == money(43.33)
    assert s.money("mrr", 0) == pytest.approx(10 * 52 / 12, abs=1e-4)
    assert every_day(s, "mrr", 0, 119) == {round(10 * 52 / 12, 6)}
    assert every_day(s, "churned_mrr", 0, 119) == {0.0}
    assert sum(s.money("revenue", n) for n in range(120)) == money(10.0 * 18)  # 18 weeks billed


def test_example_5_vat_on_the_invoice_is_not_recurring_revenue(sync) -> None:
    s = sync(subscriber(SubscriptionScript(price=monthly(100)), tax=20.0))
    with s.world.warehouse.tenant(WORKSPACE, actor="t") as db:
        first = db.execute(
            sa.text(
                "SELECT (payload->>'total')::int, (payload->'total_taxes'->0->>'amount')::int"
                " FROM raw_records WHERE stream = 'invoices'"
                " ORDER BY (payload->>'created')::bigint LIMIT 1"
            )
        ).one()
    assert tuple(first) == (12_000, 2_000)  # an invoice of $120 including $20 VAT
    assert s.money("revenue", 0) == money(120.0)
    assert s.money("mrr", 0) == money(100.0)
    assert every_day(s, "mrr", 0, 119) == {100.0}


def test_example_6_trialing_past_due_unpaid(sync) -> None:
    # A 14-day trial from day 0; the first renewal (day 45, February 15th) fails: past_due;
    # the invoice is marked uncollectible on day 52: unpaid, and the customer churns.
    sub = SubscriptionScript(
        price=monthly(50), trial_days=14, events=(PaymentFails(45), MarkUnpaid(52))
    )
    s = sync(subscriber(sub))
    assert [s.status(0, n) for n in (0, 13, 14, 44, 45, 51, 52, 119)] == [
        *["trialing"] * 2,
        *["active"] * 2,
        *["past_due"] * 2,
        *["unpaid"] * 2,
    ]
    assert every_day(s, "mrr", 0, 13) == {0.0}  # trialing: $0
    assert s.money("new_mrr", 14) == money(50.0)  # the trial converts
    assert s.value("new_customers", 14) == 1
    assert every_day(s, "mrr", 14, 51) == {50.0}  # active, then past_due: still $50
    assert every_day(s, "churned_mrr", 0, 51) == {0.0}
    assert s.money("mrr", 52) == money(0.0)  # unpaid: $0 and churned
    assert s.money("churned_mrr", 52) == money(50.0)
    assert s.value("churned_customers", 52) == 1
    assert s.value("active_customers", 52) == 0
    assert every_day(s, "mrr", 52, 119) == {0.0}
    assert every_day(s, "churned_mrr", 53, 119) == {0.0}


def test_an_unpaid_invoice_paid_later_is_a_reactivation(sync) -> None:
    events = (PaymentFails(31), MarkUnpaid(38), PaymentSucceeds(45))
    s = sync(subscriber(SubscriptionScript(price=monthly(50), events=events)))
    assert [s.status(0, n) for n in (30, 31, 38, 45)] == ["active", "past_due", "unpaid", "active"]
    assert s.money("churned_mrr", 38) == money(50.0)
    assert s.money("reactivation_mrr", 45) == money(50.0)
    assert s.money("new_mrr", 45) == money(0.0)
    assert every_day(s, "mrr", 45, 119) == {50.0}


def test_example_7_a_hundred_monthly_and_fifty_yearly_subscriptions(sync) -> None:
    customers = [subscriber(SubscriptionScript(price=monthly(100))) for _ in range(100)]
    customers += [
        subscriber(SubscriptionScript(price=PriceSpec(60_000, "year"))) for _ in range(50)
    ]
    s = sync(*customers)
    assert s.money("mrr", 0) == money(12_500.0)
    assert s.value("active_customers", 0) == 150
    assert s.money("arpa", 0) == money(12_500 / 150)
    assert every_day(s, "mrr", 0, 119) == {12_500.0}


def test_example_8_net_revenue_retention_over_30_days(sync) -> None:
    # The cohort of day 40: four customers worth $10,000 a month. Over the 30 days ending on
    # day 70, one expands by $1,500, one contracts by $300 and one ($700) churns; a new
    # customer (day 45) is not in the cohort.
    seat = monthly(100)
    s = sync(
        subscriber(SubscriptionScript(price=seat, quantity=30, events=(Change(50, quantity=45),))),
        subscriber(SubscriptionScript(price=seat, quantity=30, events=(Change(55, quantity=27),))),
        subscriber(SubscriptionScript(price=seat, quantity=7, events=(Cancel(60),))),
        subscriber(SubscriptionScript(price=seat, quantity=33)),
        subscriber(SubscriptionScript(price=seat, quantity=5), created=45),
    )
    assert s.money("mrr", 40) == money(10_000.0)
    assert s.money("new_mrr", 45) == money(500.0)
    assert s.money("expansion_mrr", 50) == money(1_500.0)
    assert s.money("contraction_mrr", 55) == money(300.0)
    assert s.money("churned_mrr", 60) == money(700.0)
    assert s.value("churned_customers", 60) == 1
    assert s.money("mrr", 70) == money(10_000 + 1_500 - 300 - 700 + 500)
    assert s.value("net_revenue_retention", 70) == pytest.approx(1.05, abs=1e-6)
    assert s.value("revenue_churn_rate", 70) == pytest.approx((700 + 300) / 10_000, abs=1e-6)
    assert s.value("customer_churn_rate", 70) == pytest.approx(1 / 4, abs=1e-6)
    # 30 days before, nothing had moved yet
    assert s.value("net_revenue_retention", 40) == pytest.approx(1.0, abs=1e-6)
    assert s.value("customer_churn_rate", 40) == 0


GRADUATED = PriceSpec(
    tiers=((5, 1_500, 2_000), (20, 1_200, 0), (None, 900, 0)),
    tiers_mode="graduated",
    product="seats",
)
VOLUME = PriceSpec(
    tiers=((10, 2_000, 0), (50, 1_700, 5_000), (None, 1_500, 10_000)),
    tiers_mode="volume",
    product="volume",
)
API_CALLS = PriceSpec(5, usage_type="metered", product="api")  # $0.05 a call


def test_tiers_metered_items_amount_off_coupons_and_cancel_at_period_end(sync) -> None:
    s = sync(
        # 5 x $15 + $20 flat, 15 x $12, 5 x $9
        subscriber(SubscriptionScript(price=GRADUATED, quantity=25)),
        # all 25 at the second tier: 25 x $17 + $50 flat
        subscriber(SubscriptionScript(price=VOLUME, quantity=25), created=1),
        # $100 licensed + 1,000 metered calls a month ($50, billed a month late): MRR $100
        subscriber(
            SubscriptionScript(
                items=(ItemScript(monthly(100)), ItemScript(API_CALLS, None, usage=1_000))
            ),
            created=2,
        ),
        # $120 off a yearly invoice, forever: $10 off a month
        subscriber(
            SubscriptionScript(price=YEARLY_1200, coupon=CouponSpec(amount_off=12_000)),
            created=3,
        ),
        # canceled on day 10 at the end of its period (February 5th, day 35): counts until then
        subscriber(
            SubscriptionScript(price=monthly(40), events=(Cancel(10, at_period_end=True),)),
            created=4,
        ),
    )
    assert s.money("new_mrr", 0) == money(320.0)
    assert s.money("new_mrr", 1) == money(475.0)
    assert s.money("new_mrr", 2) == money(100.0)
    assert s.money("new_mrr", 3) == money(90.0)
    assert s.money("new_mrr", 4) == money(40.0)
    assert s.money("revenue", 33) == money(100.0 + 50.0)  # the usage is billed, not recurring
    assert every_day(s, "mrr", 4, 34) == {320.0 + 475 + 100 + 90 + 40}
    assert s.money("churned_mrr", 35) == money(40.0)
    assert every_day(s, "mrr", 35, 119) == {320.0 + 475 + 100 + 90}


def test_scripted_lifecycles_agree_with_the_truth(sync) -> None:
    """More of the contract's cases in one business, checked day by day against the truth."""
    m = monthly
    sync(
        # monthly -> yearly: the billing cycle restarts on day 40
        subscriber(SubscriptionScript(price=m(100), events=(Change(40, price=YEARLY_1200),))),
        # churn on day 40, then a new subscription on day 80: a reactivation
        subscriber(
            SubscriptionScript(price=m(100), events=(Cancel(40),)),
            SubscriptionScript(price=m(70), start=80),
        ),
        # two subscriptions at once, one of them weekly
        subscriber(
            SubscriptionScript(price=m(100)),
            SubscriptionScript(price=PriceSpec(1_000, "week"), start=10, events=(Cancel(50),)),
        ),
        # an add-on item added, then removed, mid-period
        subscriber(
            SubscriptionScript(price=m(100), events=(AddItem(40, m(10), 3), RemoveItem(70, 1)))
        ),
        # a downgrade that leaves a credit balance for the next invoices
        subscriber(SubscriptionScript(price=m(100), quantity=10, events=(Change(40, quantity=2),))),
        # unpaid, then canceled; past_due, then recovered
        subscriber(
            SubscriptionScript(price=m(100), events=(PaymentFails(31), MarkUnpaid(38), Cancel(45)))
        ),
        subscriber(
            SubscriptionScript(price=m(100), events=(PaymentFails(31), PaymentSucceeds(35)))
        ),
        # trials: with a once coupon; canceled during the trial, effective at its end
        subscriber(
            SubscriptionScript(
                price=m(100), trial_days=30, coupon=CouponSpec(percent_off=50, duration="once")
            )
        ),
        subscriber(
            SubscriptionScript(
                price=m(100), trial_days=30, events=(Cancel(10, at_period_end=True),)
            )
        ),
        # forever coupons added later: percent and amount off together
        subscriber(
            SubscriptionScript(
                price=m(100),
                events=(
                    AddCoupon(40, CouponSpec(percent_off=10)),
                    AddCoupon(50, CouponSpec(amount_off=500)),
                ),
            )
        ),
        # a zero-decimal currency with a repeating coupon (no effect on MRR)
        subscriber(
            SubscriptionScript(
                price=PriceSpec(15_000),
                coupon=CouponSpec(percent_off=25, duration="repeating", duration_in_months=2),
            ),
            currency="jpy",
        ),
    )


def test_an_amount_off_coupon_is_normalized_like_the_current_price(sync) -> None:
    # $1,200/year with $120 off forever: $90. On day 40 the plan becomes $200/month, so the
    # coupon takes $120 off every monthly invoice: $80 (not $190, as if still yearly).
    sub = SubscriptionScript(
        price=YEARLY_1200,
        coupon=CouponSpec(amount_off=12_000),
        events=(Change(40, price=monthly(200)),),
    )
    s = sync(subscriber(sub), truth=False)
    assert s.money("mrr", 39) == money(90.0)
    assert s.sandbox.truth.customer_mrr_at(0, end_of_day(day(40))) == pytest.approx(8_000)
    assert s.money("mrr", 40) == money(80.0)


# -- the scripted sandbox itself (no pipeline) ---------------------------------------------------

CONTRACT_CASES = (
    subscriber(SubscriptionScript(price=YEARLY_1200, coupon=CouponSpec(percent_off=20))),
    subscriber(
        SubscriptionScript(
            price=monthly(50), trial_days=14, events=(("past_due", 45), ("unpaid", 52))
        )
    ),
    subscriber(
        SubscriptionScript(
            price=monthly(100),
            quantity=30,
            events=(("quantity", 50, 45), ("upgrade", 70, monthly(120)), ("cancel", 100)),
        ),
        created=3,
    ),
    subscriber(
        SubscriptionScript(items=(ItemScript(GRADUATED, 25), ItemScript(API_CALLS, None, 1_000))),
        created=4,
    ),
    subscriber(
        SubscriptionScript(
            price=VOLUME, quantity=25, events=(("coupon", 20, CouponSpec(amount_off=1_000)),)
        ),
        created=5,
        currency="eur",
        tax="de",
    ),
)


def test_a_scripted_sandbox_obeys_the_sandbox_contract() -> None:
    """MRR rebuilt from the served JSON equals the truth every day, and advancing the clock
    keeps every object that existed (same ids, same invoices)."""
    from kpi_pipelines_tests.sandbox.stripe.conftest import serve
    from kpi_pipelines_tests.sandbox.stripe.reference import reconstruct

    sandbox = StripeSandbox.scripted(CONTRACT_CASES, start=START, now=START + timedelta(days=60))
    before = {ci: [inv.created for inv in sandbox.sim(ci).invoices] for ci in range(5)}
    sandbox.advance(NOW)
    for ci, created in before.items():
        assert [inv.created for inv in sandbox.sim(ci).invoices][: len(created)] == created
    for served in serve(sandbox):
        customers, mrr_at = reconstruct(served.ok)
        statuses = sorted(s["status"] for s in served.all("/v1/subscriptions", {"status": "all"}))
    assert len(customers) == 5
    assert statuses == ["active", "active", "active", "canceled", "unpaid"]
    for n in range(120):
        t = end_of_day(day(n))
        truth, rebuilt = sandbox.truth.mrr_at(t), mrr_at(t)
        assert set(rebuilt) == set(truth), n
        for cid, (_, value) in truth.items():
            assert rebuilt[cid][1] == pytest.approx(value, abs=1e-6), (n, cid)
    steps = {ci: [v for _, v in sandbox.truth.steps(ci)] for ci in range(5)}
    assert steps[0] == [8_000]
    assert steps[1] == [0, 5_000, 0]
    assert steps[2] == [300_000, 450_000, 540_000, 0]
    assert steps[3] == [32_000]
    assert steps[4] == [47_500, 46_500]


@pytest.mark.parametrize(
    ("sub", "message"),
    [
        (SubscriptionScript(price=monthly(10), events=(MarkUnpaid(40),)), "no failed renewal"),
        (
            SubscriptionScript(price=monthly(10), events=(PaymentFails(31), PaymentSucceeds(70))),
            "resolved within its billing period",
        ),
        (SubscriptionScript(price=monthly(10), events=(Change(31, quantity=2),)), "period start"),
        (SubscriptionScript(price=monthly(10), events=(Cancel(5), Cancel(9))), "after"),
        (SubscriptionScript(price=monthly(10), trial_days=7, events=(PaymentFails(3),)), "trial"),
    ],
)
def test_a_script_that_cannot_happen_is_refused(sub: SubscriptionScript, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ScriptedSandbox([subscriber(sub)], start=START, now=NOW)


def test_an_invoice_with_more_lines_than_stripe_embeds_is_landed_whole(sync) -> None:
    # Stripe embeds an invoice's first 10 lines; the rest come from /v1/invoices/{id}/lines.
    dollars = [10 + n for n in range(12)]
    s = sync(subscriber(SubscriptionScript(items=tuple(ItemScript(monthly(d)) for d in dollars))))
    assert s.money("mrr", 0) == money(sum(dollars))
    assert s.money("revenue", 0) == money(sum(dollars))
    with s.world.warehouse.tenant(WORKSPACE, actor="t") as db:
        landed = db.execute(
            sa.text(
                "SELECT jsonb_array_length(payload->'lines'->'data'),"
                " (payload->'lines'->>'has_more')::boolean"
                " FROM raw_records WHERE stream = 'invoices'"
            )
        ).all()
    assert len(landed) == 5  # the 1st of January to the 1st of May (the clock)
    assert set(landed) == {(12, False)}
