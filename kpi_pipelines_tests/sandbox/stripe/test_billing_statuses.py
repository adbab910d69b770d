"""Subscription statuses as Stripe's billing settings make them: incomplete first payments,
what happens after the last retry, and trials that end without a payment method. MRR
counts `active` and `past_due` only (kpi-definitions.md); the numbers are worked by hand."""

from __future__ import annotations

import pytest

from kpi_pipelines.sandbox.stripe.scenarios import (
    Cancel,
    PaymentFails,
    PaymentSucceeds,
    Resume,
    RetriesExhausted,
    SubscriptionScript,
    as_event,
)
from kpi_pipelines_tests.sandbox.stripe.billing_helpers import (
    HOUR,
    account,
    events,
    invoices,
    monthly,
    mrr,
    subscription,
    ts,
)


def _types(served, *types):
    return [(e["type"], e["created"]) for e in events(served, *types)]


def test_a_first_payment_that_fails_and_is_never_made_expires_after_23_hours() -> None:
    sub = SubscriptionScript(price=monthly(50), first_payment_fails=True)
    with account(sub, now_days=2) as served:
        assert mrr(served, 0.5) == 0.0  # incomplete does not count
        assert mrr(served, 1.5) == 0.0  # nor incomplete_expired
        got = subscription(served)
        assert got["status"] == "incomplete_expired"
        [inv] = invoices(served)
        assert got["latest_invoice"] == inv["id"]
        assert inv["status"] == "void"
        assert inv["status_transitions"]["voided_at"] == ts(0) + 23 * HOUR
        assert inv["status_transitions"]["paid_at"] is None
        assert inv["attempt_count"] == 1
        created = [e for e in events(served, "customer.subscription.created")]
        assert created[0]["data"]["object"]["status"] == "incomplete"
        [voided] = events(served, "invoice.voided")
        assert voided["created"] == ts(0) + 23 * HOUR
        assert voided["data"]["object"]["status"] == "void"
        [updated] = events(served, "customer.subscription.updated")
        assert updated["created"] == ts(0) + 23 * HOUR
        assert updated["data"]["object"]["status"] == "incomplete_expired"
        assert updated["data"]["previous_attributes"] == {"status": "incomplete"}
        assert len(events(served, "invoice.payment_failed")) == 1


def test_a_first_payment_made_within_23_hours_activates_the_subscription() -> None:
    sub = SubscriptionScript(
        price=monthly(50), first_payment_fails=True, events=[PaymentSucceeds(0.5)]
    )
    with account(sub, now_days=3) as served:
        assert mrr(served, 0.25) == 0.0
        assert mrr(served, 0.6) == 50.0
        assert subscription(served)["status"] == "active"
        [inv] = invoices(served)
        assert inv["status"] == "paid"
        assert inv["attempt_count"] == 2  # the failed attempt and the payment
        [updated] = events(served, "customer.subscription.updated")
        assert updated["created"] == ts(0.5) + 1
        assert updated["data"]["previous_attributes"] == {"status": "incomplete"}


@pytest.mark.parametrize(
    ("then", "invoice", "status", "invoice_status", "mrr_after"),
    [
        ("unpaid", "open", "unpaid", "open", 0.0),
        ("unpaid", "uncollectible", "unpaid", "uncollectible", 0.0),
        ("canceled", "open", "canceled", "open", 0.0),
        ("canceled", "uncollectible", "canceled", "uncollectible", 0.0),
        ("past_due", "open", "past_due", "open", 50.0),
    ],
)
def test_what_the_settings_do_after_the_last_retry(
    then: str, invoice: str, status: str, invoice_status: str, mrr_after: float
) -> None:
    # The February renewal (day 31) fails: past_due (still $50); the last retry fails on
    # day 45 and the settings decide the rest.
    sub = SubscriptionScript(
        price=monthly(50), events=[PaymentFails(31), RetriesExhausted(45, then, invoice)]
    )
    with account(sub, now_days=55) as served:
        assert mrr(served, 30) == 50.0
        assert mrr(served, 40) == 50.0  # past_due counts
        assert mrr(served, 46) == mrr_after
        assert subscription(served)["status"] == status
        renewal = invoices(served)[-1]
        assert renewal["billing_reason"] == "subscription_cycle"
        assert renewal["status"] == invoice_status
        marked = renewal["status_transitions"]["marked_uncollectible_at"]
        assert marked == (ts(45) + 2 if invoice == "uncollectible" else None)
        assert renewal["attempt_count"] == 2
        assert renewal["next_payment_attempt"] is None
        failed = events(served, "invoice.payment_failed")
        assert [e["created"] for e in failed] == [ts(31) + 3600 + 60 + 1, ts(45) + 1]
        # the first failure announced the last retry as its next attempt
        assert failed[0]["data"]["object"]["next_payment_attempt"] == ts(45)
        kinds = _types(
            served,
            "customer.subscription.updated",
            "customer.subscription.deleted",
            "invoice.marked_uncollectible",
        )
        after = [k for k, t in kinds if t >= ts(45)]
        expected = []
        if invoice == "uncollectible":
            expected.append("invoice.marked_uncollectible")
        if then == "unpaid":
            expected.append("customer.subscription.updated")
        if then == "canceled":
            expected.append("customer.subscription.deleted")
        assert after == expected
        if then == "unpaid":
            [upd] = [
                e
                for e in events(served, "customer.subscription.updated")
                if e["created"] == ts(45) + 2
            ]
            assert upd["data"]["previous_attributes"] == {"status": "past_due"}
        if then == "canceled":
            [deleted] = events(served, "customer.subscription.deleted")
            obj = deleted["data"]["object"]
            assert obj["ended_at"] == ts(45) + 2
            assert obj["cancellation_details"]["reason"] == "payment_failed"


def test_an_unpaid_subscription_with_its_invoice_left_open_is_paid_later() -> None:
    sub = SubscriptionScript(
        price=monthly(50),
        events=[PaymentFails(31), RetriesExhausted(45, "unpaid"), PaymentSucceeds(50)],
    )
    with account(sub, now_days=55) as served:
        assert [mrr(served, d) for d in (40, 46, 51)] == [50.0, 0.0, 50.0]
        assert subscription(served)["status"] == "active"
        renewal = invoices(served)[-1]
        assert renewal["status"] == "paid"
        assert renewal["status_transitions"]["marked_uncollectible_at"] is None


def test_a_trial_that_ends_without_a_payment_method_pauses_until_resumed() -> None:
    sub = SubscriptionScript(
        price=monthly(50), trial_days=14, missing_payment_method="pause", events=[Resume(20.5)]
    )
    with account(sub, now_days=25) as served:
        assert [mrr(served, d) for d in (10, 15, 20, 21)] == [0.0, 0.0, 0.0, 50.0]
        got = subscription(served)
        assert got["status"] == "active"
        assert got["trial_settings"] == {"end_behavior": {"missing_payment_method": "pause"}}
        assert got["billing_cycle_anchor"] == ts(20.5)
        assert got["default_payment_method"] is not None
        trial, resumed = invoices(served)
        assert trial["amount_due"] == 0
        assert resumed["created"] == ts(20.5)
        assert resumed["amount_due"] == 5000
        assert resumed["status"] == "paid"
        assert resumed["lines"]["data"][0]["period"] == {
            "start": ts(20.5),
            "end": ts(20.5 + 31),
        }
        [paused] = events(served, "customer.subscription.paused")
        assert paused["created"] == ts(14)
        assert paused["data"]["object"]["status"] == "paused"
        assert paused["data"]["object"]["default_payment_method"] is None
        [at_pause] = [
            e for e in events(served, "customer.subscription.updated") if e["created"] == ts(14)
        ]
        assert at_pause["data"]["previous_attributes"]["status"] == "trialing"
        [res] = events(served, "customer.subscription.resumed")
        assert res["created"] == ts(20.5)
        assert res["data"]["object"]["status"] == "active"
        statuses = served.all("/v1/subscriptions", {"status": "paused"})
        assert statuses == []


def test_a_paused_subscription_is_listed_as_paused_and_can_be_canceled() -> None:
    sub = SubscriptionScript(
        price=monthly(50), trial_days=14, missing_payment_method="pause", events=[Cancel(40)]
    )
    with account(sub, now_days=20) as served:
        assert [s["status"] for s in served.all("/v1/subscriptions", {"status": "paused"})] == [
            "paused"
        ]
        assert mrr(served, 19) == 0.0
        assert invoices(served)[-1]["amount_due"] == 0  # no invoice while paused
    with account(sub, now_days=45) as served:
        assert subscription(served)["status"] == "canceled"


def test_a_trial_that_ends_without_a_payment_method_can_cancel_instead() -> None:
    sub = SubscriptionScript(price=monthly(50), trial_days=14, missing_payment_method="cancel")
    with account(sub, now_days=20) as served:
        got = subscription(served)
        assert got["status"] == "canceled"
        assert got["ended_at"] == ts(14)
        assert mrr(served, 15) == 0.0


def test_the_new_events_have_tuple_spellings() -> None:
    assert as_event(("retries_exhausted", 45, "unpaid")) == RetriesExhausted(45, "unpaid")
    assert as_event(("retries_exhausted", 45, "canceled", "uncollectible")) == (
        RetriesExhausted(45, "canceled", "uncollectible")
    )
    assert as_event(("resume", 20)) == Resume(20)


@pytest.mark.parametrize(
    ("sub", "message"),
    [
        (
            SubscriptionScript(
                price=monthly(50), first_payment_fails=True, events=[PaymentSucceeds(2)]
            ),
            "after the subscription expired",
        ),
        (
            SubscriptionScript(price=monthly(50), events=[RetriesExhausted(40, "unpaid")]),
            "no failed renewal",
        ),
        (
            SubscriptionScript(
                price=monthly(50),
                events=[PaymentFails(31), RetriesExhausted(40, "canceled"), PaymentSucceeds(45)],
            ),
            "after the subscription is canceled",
        ),
        (SubscriptionScript(price=monthly(50), events=[Resume(10)]), "only a paused"),
    ],
)
def test_impossible_status_scripts_are_refused(sub: SubscriptionScript, message: str) -> None:
    with pytest.raises(ValueError, match=message), account(sub, now_days=60) as served:
        served.sandbox.sim(0)
