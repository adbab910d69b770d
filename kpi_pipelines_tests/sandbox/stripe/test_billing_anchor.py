"""billing_cycle_anchor=now on an update: a new billing period starts at the change, the unused
time of the old one is credited (unless proration_behavior none) and the new period charged in
full on an invoice at once; renewals then follow the new anchor. MRR only moves with the price.
Day 15.5 is the middle of January (31 days): half the period is unused."""

from __future__ import annotations

from kpi_pipelines.sandbox.stripe.scenarios import (
    Change,
    ItemScript,
    PriceSpec,
    SubscriptionScript,
)
from kpi_pipelines_tests.sandbox.stripe.billing_helpers import (
    account,
    events,
    invoices,
    monthly,
    mrr,
    subscription,
    ts,
)


def _lines(inv) -> list[tuple[int, bool, int, int]]:
    return [
        (
            li["amount"],
            li["parent"]["subscription_item_details"]["proration"],
            li["period"]["start"],
            li["period"]["end"],
        )
        for li in inv["lines"]["data"]
    ]


def test_reset_the_anchor_without_a_price_change() -> None:
    sub = SubscriptionScript(price=monthly(30), events=[Change(15.5, billing_cycle_anchor="now")])
    with account(sub, now_days=50) as served:
        assert mrr(served, 10) == 30.0
        assert mrr(served, 20) == 30.0
        got = subscription(served)
        assert got["billing_cycle_anchor"] == ts(15.5)
        [item] = got["items"]["data"]
        assert (item["current_period_start"], item["current_period_end"]) == (
            ts(46.5),
            ts(74.5),  # Mar 16 12:00
        )
        _, reset, renewal = invoices(served)
        assert reset["billing_reason"] == "subscription_update"
        assert reset["created"] == ts(15.5)
        assert _lines(reset) == [
            (-1500, True, ts(15.5), ts(31)),  # the unused half of January
            (3000, False, ts(15.5), ts(46.5)),  # a whole new month
        ]
        assert reset["total"] == 1500
        assert reset["status"] == "paid"
        assert renewal["billing_reason"] == "subscription_cycle"
        assert renewal["created"] == ts(46.5)
        assert renewal["total"] == 3000
    with account(sub, now_days=30) as served:  # events are served for 30 days
        [upd] = [
            e for e in events(served, "customer.subscription.updated") if e["created"] == ts(15.5)
        ]
        assert upd["data"]["previous_attributes"]["billing_cycle_anchor"] == ts(0)
        assert upd["data"]["object"]["billing_cycle_anchor"] == ts(15.5)


def test_reset_the_anchor_with_an_upgrade() -> None:
    sub = SubscriptionScript(
        price=monthly(30), events=[Change(15.5, price=monthly(50), billing_cycle_anchor="now")]
    )
    with account(sub, now_days=20) as served:
        assert mrr(served, 10) == 30.0
        assert mrr(served, 16) == 50.0
        _, reset = invoices(served)
        assert [a for a, *_ in _lines(reset)] == [-1500, 5000]
        assert reset["total"] == 3500


def test_reset_the_anchor_without_prorations_and_with_two_items() -> None:
    # $30 plan + 2 seats at $10: no credit, both items charged a whole new month: $50.
    seats = PriceSpec(unit_amount=1000, product="seats")
    sub = SubscriptionScript(
        price=monthly(30),
        items=[ItemScript(seats, 2)],
        events=[Change(15.5, billing_cycle_anchor="now", proration_behavior="none")],
    )
    with account(sub, now_days=20) as served:
        assert mrr(served, 16) == 50.0
        _, reset = invoices(served)
        assert _lines(reset) == [
            (3000, False, ts(15.5), ts(46.5)),
            (2000, False, ts(15.5), ts(46.5)),
        ]
        assert reset["total"] == 5000
        assert subscription(served)["billing_cycle_anchor"] == ts(15.5)
