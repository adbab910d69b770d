"""Stripe's billing settings through the real pipeline, a worked example each: what every
setting does to MRR by kpi-definitions.md (only `active` and `past_due` count; only forever
coupons; the state of the subscription, not its invoices), with the expected values worked
out by hand in each test.

The sandbox clock stops on day 120 (May 1st); Stripe keeps 30 days of events, so a change
after day 90 is dated by its event (and the subscription as fetched), one before by the
invoices and the subscription's own dates. Most examples happen once in each era. Every sync
is also checked against the sandbox's truth on every day (the `sync` fixture).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from kpi_pipelines.sandbox.stripe.scenarios import (
    AddCoupon,
    Change,
    CouponSpec,
    CustomerScript,
    DraftRenewal,
    InvoiceCoupon,
    ItemScript,
    PauseCollection,
    PaymentFails,
    PaymentSucceeds,
    Phase,
    PriceSpec,
    Resume,
    ResumeCollection,
    RetriesExhausted,
    SubscriptionScript,
    TaxRateSpec,
)
from kpi_pipelines_tests.integrations.stripe.scripted_world import (
    START,
    every_day,
    money,
    monthly,
    subscriber,
)

FOREVER_50 = CouponSpec(percent_off=50, duration="forever")


def test_an_incomplete_start_counts_only_once_paid_and_never_if_it_expires(sync) -> None:
    def incomplete(dollars: float, created: int, paid: bool) -> CustomerScript:
        events = (PaymentSucceeds(created + 0.5),) if paid else ()
        sub = SubscriptionScript(price=monthly(dollars), first_payment_fails=True, events=events)
        return subscriber(sub, created=created)

    s = sync(
        incomplete(50, 20, paid=True),  # paid 12 hours later: active on day 20
        incomplete(70, 25, paid=False),  # incomplete_expired 23 hours later
        incomplete(30, 100, paid=True),
        incomplete(90, 105, paid=False),
    )
    assert s.status(0, 20) == "active" and s.status(1, 26) == "incomplete_expired"
    assert every_day(s, "mrr", 0, 19) == {0.0}
    assert every_day(s, "mrr", 20, 99) == {50.0}
    assert every_day(s, "mrr", 100, 119) == {80.0}
    assert s.money("new_mrr", 20) == money(50.0) and s.value("new_customers", 20) == 1
    assert s.money("new_mrr", 100) == money(30.0) and s.value("new_customers", 100) == 1
    for n in (25, 26, 105, 106):
        assert s.money("new_mrr", n) == money(0.0)
        assert s.money("churned_mrr", n) == money(0.0)
    assert s.value("active_customers", 119) == 2


@pytest.mark.parametrize(
    ("failed", "exhausted"),
    [(31.5, 45), (90.5, 100)],
    ids=["dated-by-invoices-and-charges", "dated-by-events"],
)
def test_each_dunning_outcome_after_the_last_retry(sync, failed: float, exhausted: int) -> None:
    def dunned(dollars: float, *outcome: str) -> CustomerScript:
        events = (PaymentFails(failed), RetriesExhausted(exhausted, *outcome))
        return subscriber(SubscriptionScript(price=monthly(dollars), events=events))

    s = sync(
        dunned(100, "canceled"),
        dunned(200, "unpaid", "open"),  # the invoice stays open, past due
        dunned(300, "unpaid", "uncollectible"),
        dunned(400, "past_due"),  # the subscription is left past_due: it still counts
    )
    assert [s.status(ci, exhausted) for ci in range(4)] == [
        "canceled",
        "unpaid",
        "unpaid",
        "past_due",
    ]
    assert every_day(s, "mrr", 0, exhausted - 1) == {1_000.0}
    assert s.money("churned_mrr", exhausted) == money(600.0)
    assert s.value("churned_customers", exhausted) == 3
    assert every_day(s, "mrr", exhausted, 119) == {400.0}
    assert s.value("active_customers", exhausted) == 1


def test_a_trial_without_a_payment_method_pauses_until_resumed(sync) -> None:
    def trial(dollars: float, created: int, missing: str, *events) -> CustomerScript:
        sub = SubscriptionScript(
            price=monthly(dollars), trial_days=14, missing_payment_method=missing, events=events
        )
        return subscriber(sub, created=created)

    s = sync(
        trial(60, 0, "pause", Resume(20.5)),  # paused days 14 to 20
        trial(80, 95, "pause", Resume(115.5)),  # paused days 109 to 115
        trial(45, 96, "cancel"),  # canceled when its trial ends on day 110
    )
    assert s.status(0, 15) == "paused" and s.status(1, 110) == "paused"
    assert s.status(2, 110) == "canceled"
    assert every_day(s, "mrr", 0, 19) == {0.0}
    assert s.money("new_mrr", 20) == money(60.0)
    assert every_day(s, "mrr", 20, 114) == {60.0}
    assert s.money("new_mrr", 115) == money(80.0)
    assert every_day(s, "mrr", 115, 119) == {140.0}
    assert every_day(s, "churned_mrr", 0, 119) == {0.0}


def test_every_proration_behavior_changes_mrr_when_the_subscription_changes(sync) -> None:
    def changed(before: float, after: float, at: float, behavior: str) -> CustomerScript:
        change = Change(at, price=monthly(after), proration_behavior=behavior)
        return subscriber(SubscriptionScript(price=monthly(before), events=(change,)))

    s = sync(
        # before the events' 30 days: the invoices date the change (always_invoice bills the
        # prorations at once, create_prorations on the next invoice, from the change on)
        changed(30, 60, 15.5, "always_invoice"),
        changed(30, 60, 15.5, "create_prorations"),
        # within them, the event dates it, whatever the invoices say (none bills nothing)
        changed(20, 50, 100.5, "always_invoice"),
        changed(20, 50, 100.5, "create_prorations"),
        changed(20, 50, 100.5, "none"),
        changed(100, 40, 105.5, "create_prorations"),  # a downgrade
    )
    assert every_day(s, "mrr", 0, 14) == {60.0 + 60 + 100}
    assert s.money("expansion_mrr", 15) == money(60.0)
    assert every_day(s, "mrr", 15, 99) == {120.0 + 60 + 100}
    assert s.money("expansion_mrr", 100) == money(90.0)
    assert every_day(s, "mrr", 100, 104) == {120.0 + 150 + 100}
    assert s.money("contraction_mrr", 105) == money(60.0)
    assert every_day(s, "mrr", 105, 119) == {120.0 + 150 + 40}


def test_item_discounts_stacked_discounts_and_a_free_forever_coupon(sync) -> None:
    """Discounts apply one after the other, each to what the ones before left: the item's
    own first, then the subscription's in the order they were added."""
    seats = PriceSpec(unit_amount=1_000, product="seats")  # $10 a seat
    s = sync(
        # $50 + 3 seats at half price, forever: 50 + 15
        subscriber(
            SubscriptionScript(price=monthly(50), items=(ItemScript(seats, 3, coupon=FOREVER_50),))
        ),
        # $200 with 20% off, then $10 off, both forever: 200 x 0.8 - 10
        subscriber(
            SubscriptionScript(
                price=monthly(200),
                coupon=CouponSpec(percent_off=20, duration="forever"),
                coupons=(CouponSpec(amount_off=1_000, duration="forever"),),
            )
        ),
        # the same the other way round: (200 - 10) x 0.8
        subscriber(
            SubscriptionScript(
                price=monthly(200),
                coupon=CouponSpec(amount_off=1_000, duration="forever"),
                coupons=(CouponSpec(percent_off=20, duration="forever"),),
            )
        ),
        # 100% off forever: no MRR, not an active customer
        subscriber(
            SubscriptionScript(
                price=monthly(80), coupon=CouponSpec(percent_off=100, duration="forever")
            )
        ),
        # half off the $60 item from day 100, 12:00 (dated by its event)
        subscriber(
            SubscriptionScript(price=monthly(60), events=(AddCoupon(100.5, FOREVER_50, item=0),))
        ),
    )
    assert every_day(s, "mrr", 0, 99) == {65.0 + 150 + 152 + 0 + 60}
    assert s.value("active_customers", 50) == 4
    assert s.money("contraction_mrr", 100) == money(30.0)
    assert every_day(s, "mrr", 100, 119) == {65.0 + 150 + 152 + 0 + 30}


def test_a_credit_balance_pays_invoices_but_changes_no_mrr(sync) -> None:
    credit = CustomerScript(subscriptions=(SubscriptionScript(price=monthly(50)),), balance=-7_000)
    s = sync(credit)
    assert every_day(s, "mrr", 0, 119) == {50.0}
    # $70 of credit: January's invoice is paid by it, $30 of February's is charged
    assert s.money("revenue", 0) == money(0.0)
    assert s.money("revenue", 31) == money(30.0)
    assert s.money("revenue", 59) == money(50.0)


def test_tax_included_in_a_price_is_not_recurring_revenue(sync) -> None:
    inclusive_120 = PriceSpec(unit_amount=12_000, tax_behavior="inclusive")
    s = sync(
        # Stripe Tax, 20% included: $120 is $100 of revenue and $20 of VAT
        CustomerScript(subscriptions=(SubscriptionScript(price=inclusive_120),), tax=20.0),
        # the same with 25% off forever: $90 billed, of which $15 is VAT
        CustomerScript(
            subscriptions=(
                SubscriptionScript(
                    price=inclusive_120, coupon=CouponSpec(percent_off=25, duration="forever")
                ),
            ),
            tax=20.0,
        ),
        # a manual 20% rate included in the price, on the subscription: $60 is $50
        subscriber(
            SubscriptionScript(
                price=monthly(60), default_tax_rates=(TaxRateSpec(20, inclusive=True),)
            )
        ),
        # an item's own exclusive 10% rate replaces it: its $30 stays $30
        subscriber(
            SubscriptionScript(
                price=monthly(60),
                items=(
                    ItemScript(PriceSpec(3_000, product="seats"), 1, tax_rates=(TaxRateSpec(10),)),
                ),
                default_tax_rates=(TaxRateSpec(20, inclusive=True),),
            )
        ),
    )
    assert every_day(s, "mrr", 0, 119) == {100.0 + 75 + 50 + 50 + 30}
    # revenue is what was paid: the exclusive 10% comes on top of the $30 item
    assert s.money("revenue", 0) == money(120.0 + 90 + 60 + 60 + 33)


def test_pause_collection_and_drafted_renewals_keep_mrr(sync) -> None:
    """pause_collection leaves the status active, and kpi-definitions.md counts by status;
    a renewal left in draft changes nothing about the subscription."""

    def paused(dollars: float, behavior: str, start: float, end: float) -> CustomerScript:
        events = (PauseCollection(start, behavior), ResumeCollection(end))
        return subscriber(SubscriptionScript(price=monthly(dollars), events=events))

    s = sync(
        paused(10, "void", 20, 70),
        paused(20, "keep_as_draft", 20, 70),
        paused(40, "mark_uncollectible", 20, 70),  # invoices never tried: not dunning
        paused(80, "mark_uncollectible", 95, 115),
        subscriber(SubscriptionScript(price=monthly(160), events=(DraftRenewal(32),))),
    )
    assert s.status(2, 60) == "active"
    assert every_day(s, "mrr", 0, 119) == {310.0}
    assert every_day(s, "churned_mrr", 0, 119) == {0.0}
    # February: only the subscription not yet paused is charged; April: all of them
    assert s.money("revenue", 31) == money(80.0)
    assert s.money("revenue", 90) == money(310.0)


def test_anchor_resets_and_schedule_phases(sync) -> None:
    s = sync(
        # a new billing cycle from day 15, 12:00: the same $50
        subscriber(
            SubscriptionScript(
                price=monthly(50), events=(Change(15.5, billing_cycle_anchor="now"),)
            )
        ),
        # a new cycle with an upgrade to $80 on day 100, 12:00
        subscriber(
            SubscriptionScript(
                price=monthly(50),
                events=(Change(100.5, price=monthly(80), billing_cycle_anchor="now"),),
            )
        ),
        # a schedule: $20 x 1, then $20 x 3 from day 15, 12:00, then $100 x 1 from day 104, 12:00
        subscriber(
            SubscriptionScript(
                price=monthly(20),
                phases=(Phase(15.5, quantity=3), Phase(104.5, price=monthly(100), quantity=1)),
            )
        ),
    )
    assert every_day(s, "mrr", 0, 14) == {50.0 + 50 + 20}
    assert s.money("expansion_mrr", 15) == money(40.0)
    assert every_day(s, "mrr", 15, 99) == {50.0 + 50 + 60}
    assert s.money("expansion_mrr", 100) == money(30.0)
    assert every_day(s, "mrr", 100, 103) == {50.0 + 80 + 60}
    assert s.money("expansion_mrr", 104) == money(40.0)
    assert every_day(s, "mrr", 104, 119) == {50.0 + 80 + 100}


def test_a_year_of_every_setting_matches_the_truth_every_day(sync) -> None:
    """Each setting several times over a year, in both eras, the synced series checked
    against the sandbox's truth on all 365 days (the fixture's check)."""
    yearly = PriceSpec(unit_amount=240_000, interval="year")
    quarterly = PriceSpec(unit_amount=27_000, interval="month", interval_count=3)
    seats = PriceSpec(unit_amount=1_500, product="seats")

    def sub(**kwargs) -> SubscriptionScript:
        return SubscriptionScript(**kwargs)

    customers = [
        subscriber(
            sub(price=monthly(90), first_payment_fails=True, events=(PaymentSucceeds(0.3),))
        ),
        subscriber(sub(price=monthly(40), first_payment_fails=True), created=40),
        subscriber(sub(price=monthly(55), first_payment_fails=True), created=350),
        subscriber(
            sub(price=monthly(120), events=(PaymentFails(59.5), RetriesExhausted(70, "unpaid"))),
        ),
        subscriber(
            sub(
                price=monthly(75),
                events=(PaymentFails(337), RetriesExhausted(345, "canceled")),
            ),
            created=2,
        ),
        subscriber(
            sub(
                price=monthly(65),
                events=(
                    PaymentFails(34.5),
                    RetriesExhausted(45, "unpaid", "uncollectible"),
                    PaymentSucceeds(50),
                ),
            ),
            created=3,
        ),
        subscriber(
            sub(
                price=quarterly, trial_days=14, missing_payment_method="pause", events=(Resume(30),)
            ),
            created=5,
        ),
        subscriber(
            sub(price=monthly(45), trial_days=7, missing_payment_method="pause"), created=340
        ),
        subscriber(
            sub(
                price=monthly(30),
                items=(ItemScript(seats, 4, coupon=FOREVER_50),),
                events=(
                    Change(100.5, quantity=8, item=1, proration_behavior="create_prorations"),
                    Change(200.5, price=monthly(35), proration_behavior="create_prorations"),
                    Change(345.5, quantity=2, item=1, proration_behavior="none"),
                ),
            ),
            created=6,
        ),
        subscriber(
            sub(
                price=yearly,
                coupon=CouponSpec(percent_off=10, duration="forever"),
                coupons=(CouponSpec(amount_off=12_000, duration="forever"),),
                events=(AddCoupon(352.5, CouponSpec(percent_off=100, duration="forever")),),
            ),
            created=8,
        ),
        CustomerScript(
            subscriptions=(
                sub(
                    price=monthly(150),
                    events=(Change(338.5, price=monthly(90), proration_behavior="always_invoice"),),
                ),
            ),
            created=9,
            balance=-20_000,
        ),
    ]
    customers.sort(key=lambda customer: customer.created)
    s = sync(*customers, now=START + timedelta(days=365))
    # on the last day: $90 (paid incomplete start) + $65 (paid after going unpaid) + $90
    # (quarterly, resumed) + $35 + 2 seats at half of $15 + $90 (downgraded); the rest are
    # expired, unpaid, canceled, paused or 100% off
    assert s.money("mrr", 364) == money(90.0 + 65 + 90 + 35 + 15 + 90)
    assert s.value("active_customers", 364) == 5


# -- what a price bills: packages, decimal amounts, currency options ------------------------------

SEAT = PriceSpec(unit_amount=1_000, product="seats")  # $10 a seat


def test_package_pricing_bills_whole_packages(sync) -> None:
    """transform_quantity: $30 per 10 seats. Rounded up, 25 seats are 3 packages ($90, not
    25 x $30); rounded down, 2 ($60). A quantity change counts only when it changes the
    number of packages."""
    per_10 = PriceSpec(3_000, transform_quantity=(10, "up"), product="seats")
    per_10_down = PriceSpec(3_000, transform_quantity=(10, "down"), product="seats")
    grows = (
        Change(40.5, quantity=45),  # 5 packages, dated by the invoices
        Change(100.5, quantity=50),  # still 5: nothing changes
        Change(105.5, quantity=51),  # 6 packages, dated by its event
    )
    s = sync(
        subscriber(SubscriptionScript(price=per_10, quantity=25)),
        subscriber(SubscriptionScript(price=per_10_down, quantity=25)),
        subscriber(SubscriptionScript(price=per_10, quantity=25, events=grows)),
    )
    assert every_day(s, "mrr", 0, 39) == {90.0 + 60 + 90}
    assert s.money("expansion_mrr", 40) == money(60.0)
    assert every_day(s, "mrr", 40, 104) == {90.0 + 60 + 150}
    assert every_day(s, "expansion_mrr", 41, 104) == {0.0}
    assert s.money("expansion_mrr", 105) == money(30.0)
    assert every_day(s, "mrr", 105, 119) == {90.0 + 60 + 180}
    assert s.money("revenue", 0) == money(90.0 + 60 + 90)  # what the first invoices billed


def test_decimal_amounts_are_billed_rounded_per_line(sync) -> None:
    """unit_amount_decimal is in fractions of a cent; each invoice line is rounded to the
    cent (half up): MRR is what the line bills."""
    half_a_cent = PriceSpec("0.5", product="seats")  # 1,001 x 0.5 = 500.5: 501 cents
    per_mille = PriceSpec("1999.5", product="seats")  # 3 x 1999.5 = 5998.5: 5999 cents
    api_tiers = PriceSpec(  # graduated: 1,000 at 0.25, the rest at 0.1 cent
        tiers=((1_000, "0.25", 0), (None, "0.1", 0)), tiers_mode="graduated", product="seats"
    )
    s = sync(
        subscriber(SubscriptionScript(price=half_a_cent, quantity=1_001)),
        subscriber(SubscriptionScript(price=per_mille, quantity=3)),
        subscriber(SubscriptionScript(price=api_tiers, quantity=1_001)),  # 250.1: 250 cents
        subscriber(SubscriptionScript(price=api_tiers, quantity=1_500)),  # 300 cents
    )
    assert every_day(s, "mrr", 0, 119) == {5.01 + 59.99 + 2.50 + 3.00}
    assert s.money("revenue", 0) == money(5.01 + 59.99 + 2.50 + 3.00)


def test_a_multi_currency_price_bills_the_subscriptions_currency(sync) -> None:
    """A price in EUR with currency options: a USD subscription bills its USD amount (not
    the EUR one as if in dollars), tiers included; so does a coupon's amount off."""
    euro_plan = PriceSpec(4_000, currency="eur", currency_options=(("usd", 5_000),))
    euro_tiers = PriceSpec(
        tiers=((5, 1_000, 0), (None, 800, 0)),
        tiers_mode="graduated",
        product="seats",
        currency="eur",
        currency_options=(("usd", ((5, 1_200, 0), (None, 1_000, 0))),),
    )
    five_euros_off = CouponSpec(amount_off=500, currency="eur", currency_options=(("usd", 600),))
    s = sync(
        subscriber(SubscriptionScript(price=euro_plan)),  # $50
        subscriber(SubscriptionScript(price=euro_tiers, quantity=8)),  # 5 x $12 + 3 x $10
        subscriber(SubscriptionScript(price=monthly(50), coupon=five_euros_off)),  # $50 - $6
        subscriber(  # the coupon added on day 100, 12:00: dated by its event
            SubscriptionScript(price=euro_plan, events=(AddCoupon(100.5, five_euros_off),))
        ),
    )
    assert every_day(s, "mrr", 0, 99) == {50.0 + 90 + 44 + 50}
    assert s.money("contraction_mrr", 100) == money(6.0)
    assert every_day(s, "mrr", 100, 119) == {50.0 + 90 + 44 + 44}


def test_a_coupon_limited_to_products_discounts_only_their_items(sync) -> None:
    """applies_to.products: a subscription's coupon takes its percentage of, or shares its
    amount off among, the items of those products only, never more than they cost."""
    seats_half = CouponSpec(percent_off=50, applies_to=("seats",))
    plan_20_off = CouponSpec(amount_off=2_000, applies_to=("pro",))
    seats_40_off = CouponSpec(amount_off=4_000, applies_to=("seats",))

    def plan_and_seats(**kwargs) -> CustomerScript:
        return subscriber(
            SubscriptionScript(price=monthly(50), items=(ItemScript(SEAT, 3),), **kwargs)
        )

    s = sync(
        plan_and_seats(coupon=seats_half),  # 50 + 30 / 2
        plan_and_seats(coupon=plan_20_off),  # (50 - 20) + 30
        plan_and_seats(coupon=seats_40_off),  # 50 + 0: no more than the seats cost
        # the seats' half, then 20% of everything: (50 + 15) x 0.8
        plan_and_seats(coupon=seats_half, coupons=(CouponSpec(percent_off=20),)),
        plan_and_seats(events=(AddCoupon(100.5, seats_half),)),  # 80, then 65 from day 100
    )
    assert every_day(s, "mrr", 0, 99) == {65.0 + 60 + 50 + 52 + 80}
    assert s.money("contraction_mrr", 100) == money(15.0)
    assert every_day(s, "mrr", 100, 119) == {65.0 + 60 + 50 + 52 + 65}


def test_an_amount_off_comes_off_before_the_included_tax(sync) -> None:
    """A price including 20% tax with $12 off forever: the invoice bills $108, of which
    $18 is tax, so MRR is $90 (not $100 - $12)."""
    inclusive_120 = PriceSpec(unit_amount=12_000, tax_behavior="inclusive")
    twelve_off = CouponSpec(amount_off=1_200)
    s = sync(
        # Stripe Tax, 20% included in the price
        CustomerScript(
            subscriptions=(SubscriptionScript(price=inclusive_120, coupon=twelve_off),), tax=20.0
        ),
        # a manual 20% rate included in the price
        subscriber(
            SubscriptionScript(
                price=monthly(120),
                coupon=twelve_off,
                default_tax_rates=(TaxRateSpec(20, inclusive=True),),
            )
        ),
    )
    assert every_day(s, "mrr", 0, 119) == {90.0 + 90}
    assert s.money("revenue", 0) == money(108.0 + 108)


def test_a_coupon_on_one_invoice_is_not_recurring(sync) -> None:
    """A discount set on one invoice (its `invoice` set, not the subscription's) bills that
    invoice only, whatever its coupon's duration: MRR stays the subscription's."""
    half_forever = CouponSpec(percent_off=50, duration="forever")
    s = sync(
        # on the February 1st invoice: dated by the invoices (before the events' 30 days)
        subscriber(
            SubscriptionScript(price=monthly(100), events=(InvoiceCoupon(20.5, half_forever),))
        ),
        # on the April 1st invoice: within them
        subscriber(
            SubscriptionScript(price=monthly(60), events=(InvoiceCoupon(85.5, half_forever),))
        ),
    )
    assert every_day(s, "mrr", 0, 119) == {160.0}
    assert s.money("revenue", 31) == money(50.0 + 60)  # February's invoices
    assert s.money("revenue", 59) == money(100.0 + 60)
    assert s.money("revenue", 90) == money(100.0 + 30)  # April's
