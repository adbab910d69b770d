"""proration_behavior on Change, AddItem and RemoveItem, as Stripe documents it:
`create_prorations` (the API's default) turns the proration lines into pending invoice items
billed on the next invoice, `none` makes no proration lines, `always_invoice` invoices them at
once. The subscription changes at the change instant in every case, and so does the MRR."""

from __future__ import annotations

import pytest

from kpi_pipelines.sandbox.stripe.scenarios import (
    AddItem,
    Change,
    PriceSpec,
    RemoveItem,
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

# $30/month from January 1st; on January 16th, 12:00 (day 15.5) it becomes $60/month. Half of
# January's 31 days is left: a credit of -$15.00 for the unused time, +$30.00 for the rest.
UPGRADE = 15.5


def _lines(inv):
    out = []
    for line in inv["lines"]["data"]:
        details = line["parent"]["subscription_item_details"]
        out.append((line["amount"], details["proration"], details["invoice_item"] is not None))
    return out


def _upgraded(behavior: str) -> SubscriptionScript:
    return SubscriptionScript(
        price=monthly(30),
        events=[Change(UPGRADE, price=monthly(60), proration_behavior=behavior)],
    )


@pytest.mark.parametrize("behavior", ["create_prorations", "none", "always_invoice"])
def test_the_subscription_and_the_mrr_change_at_the_change_whatever_the_behavior(
    behavior: str,
) -> None:
    with account(_upgraded(behavior), now_days=20) as served:
        assert mrr(served, 15) == 30.0
        assert mrr(served, 15.6) == 60.0
        [item] = subscription(served)["items"]["data"]
        assert item["price"]["unit_amount"] == 6000
        [updated] = events(served, "customer.subscription.updated")
        assert updated["created"] == ts(UPGRADE)
        prev_items = updated["data"]["previous_attributes"]["items"]["data"]
        assert prev_items[0]["price"]["unit_amount"] == 3000


def test_create_prorations_makes_pending_invoice_items_billed_on_the_renewal(
    stripe_fixtures,
) -> None:
    with account(_upgraded("create_prorations"), now_days=20) as served:
        assert [inv["billing_reason"] for inv in invoices(served)] == ["subscription_create"]
        cus = subscription(served)["customer"]
        pending = served.all("/v1/invoiceitems", {"customer": cus, "pending": "true"})
        assert sorted(ii["amount"] for ii in pending) == [-1500, 3000]
        for ii in pending:
            assert set(ii) == set(stripe_fixtures["invoiceitem"])
            assert ii["object"] == "invoiceitem"
            assert ii["invoice"] is None
            assert ii["proration"] is True
            assert ii["date"] == ts(UPGRADE)
            assert ii["period"] == {"start": ts(UPGRADE), "end": ts(31)}
        created = events(served, "invoiceitem.created")
        assert sorted(e["data"]["object"]["amount"] for e in created) == [-1500, 3000]
        one = served.ok(f"/v1/invoiceitems/{pending[0]['id']}")
        assert one["id"] == pending[0]["id"]
    with account(_upgraded("create_prorations"), now_days=40) as served:
        _first, renewal = invoices(served)
        assert renewal["billing_reason"] == "subscription_cycle"
        assert renewal["created"] == ts(31)
        # the two prorations (from their invoice items), then February at $60
        assert _lines(renewal) == [(-1500, True, True), (3000, True, True), (6000, False, False)]
        assert renewal["amount_due"] == 7500
        cus = subscription(served)["customer"]
        assert served.all("/v1/invoiceitems", {"customer": cus, "pending": "true"}) == []
        taken = served.all("/v1/invoiceitems", {"customer": cus})
        assert {ii["invoice"] for ii in taken} == {renewal["id"]}


def test_none_makes_no_proration_lines() -> None:
    with account(_upgraded("none"), now_days=40) as served:
        first, renewal = invoices(served)
        assert _lines(first) == [(3000, False, False)]
        assert _lines(renewal) == [(6000, False, False)]
        assert served.all("/v1/invoiceitems") == []
        assert events(served, "invoiceitem.created") == []


def test_always_invoice_bills_the_prorations_at_once() -> None:
    with account(_upgraded("always_invoice"), now_days=40) as served:
        _first, update, renewal = invoices(served)
        assert update["billing_reason"] == "subscription_update"
        assert update["created"] == ts(UPGRADE)
        assert update["status"] == "paid"
        assert _lines(update) == [(-1500, True, False), (3000, True, False)]
        assert update["amount_due"] == 1500
        assert _lines(renewal) == [(6000, False, False)]


def test_a_downgrade_with_create_prorations_credits_the_next_invoice() -> None:
    # $60 -> $30 on day 15.5: -$30.00 unused, +$15.00 remaining; February: $30 - $15 = $15.
    sub = SubscriptionScript(
        price=monthly(60),
        events=[Change(UPGRADE, price=monthly(30), proration_behavior="create_prorations")],
    )
    with account(sub, now_days=40) as served:
        assert (mrr(served, 15), mrr(served, 16)) == (60.0, 30.0)
        renewal = invoices(served)[-1]
        assert _lines(renewal) == [(-3000, True, True), (1500, True, True), (3000, False, False)]
        assert renewal["amount_due"] == 1500


def test_items_added_and_removed_under_each_behavior() -> None:
    seats = PriceSpec(unit_amount=1000, product="seats")
    sub = SubscriptionScript(
        price=monthly(30),
        events=[
            AddItem(UPGRADE, seats, 2, proration_behavior="create_prorations"),
            RemoveItem(20.5, 1, proration_behavior="none"),
        ],
    )
    with account(sub, now_days=40) as served:
        assert [mrr(served, d) for d in (15, 16, 21)] == [30.0, 50.0, 30.0]
        renewal = invoices(served)[-1]
        # +$10 for the two seats' remaining half of January; no credit for their removal
        assert _lines(renewal) == [(1000, True, True), (3000, False, False)]
        assert len(invoices(served)) == 2


def test_a_change_of_interval_is_invoiced_at_once_whatever_the_behavior() -> None:
    yearly = PriceSpec(unit_amount=30_000, interval="year")
    sub = SubscriptionScript(
        price=monthly(30),
        events=[Change(UPGRADE, price=yearly, proration_behavior="none")],
    )
    with account(sub, now_days=20) as served:
        assert mrr(served, 16) == 25.0
        update = invoices(served)[-1]
        assert update["billing_reason"] == "subscription_update"
        assert _lines(update) == [(30_000, False, False)]  # no credit under none
        assert subscription(served)["billing_cycle_anchor"] == ts(UPGRADE)


def test_an_unknown_behavior_is_refused() -> None:
    with pytest.raises(ValueError, match="proration_behavior"):
        Change(10, quantity=2, proration_behavior="sometimes")
