"""Subscription schedules: the script's items are phase 0, each Phase changes the first item
from its start (prorated as its proration_behavior says; a schedule's default is
create_prorations: pending invoice items billed on the next renewal), and the schedule is
released (end_behavior release) when its last phase has run one billing period. Day 15.5 is
the middle of January (31 days), day 45 the middle of February (28 days)."""

from __future__ import annotations

from kpi_pipelines.sandbox.stripe.scenarios import Phase, SubscriptionScript
from kpi_pipelines_tests.sandbox.stripe.billing_helpers import (
    account,
    events,
    invoices,
    monthly,
    mrr,
    subscription,
    ts,
)

SUB = SubscriptionScript(
    price=monthly(30),
    phases=[Phase(15.5, price=monthly(50), quantity=2), Phase(45, price=monthly(20))],
)


def test_the_phases_change_the_items_and_the_truth() -> None:
    with account(SUB, now_days=80) as served:
        assert mrr(served, 10) == 30.0
        assert mrr(served, 20) == 100.0  # 2 x $50
        assert mrr(served, 50) == 40.0  # 2 x $20
        assert mrr(served, 79) == 40.0  # released: the subscription goes on
        _, feb, mar = invoices(served)
        # The phase-1 prorations (-1500 for the unused half of January at $30, +5000 for
        # 2 x $50 over the other half) are pending items billed first on Feb 1.
        assert [li["amount"] for li in feb["lines"]["data"]] == [-1500, 5000, 10_000]
        assert feb["total"] == 13_500
        # Phase 2 on Feb 15: -5000 (2 x $50, half of February) + 2000 (2 x $20), then March.
        assert [li["amount"] for li in mar["lines"]["data"]] == [-5000, 2000, 4000]
        assert mar["total"] == 1000
        assert len(served.all("/v1/invoiceitems")) == 4


def test_the_schedule_while_active() -> None:
    with account(SUB, now_days=40) as served:
        sub = subscription(served)
        sched_id = sub["schedule"]
        assert sched_id.startswith("sub_sched_")
        sched = served.ok(f"/v1/subscription_schedules/{sched_id}")
        assert sched["status"] == "active"
        assert sched["subscription"] == sub["id"]
        assert sched["end_behavior"] == "release"
        assert sched["current_phase"] == {"start_date": ts(15.5), "end_date": ts(45)}
        phases = sched["phases"]
        assert [(p["start_date"], p["end_date"]) for p in phases] == [
            (ts(0), ts(15.5)),
            (ts(15.5), ts(45)),
            (ts(45), ts(73)),  # one month from Feb 15
        ]
        assert [p["items"][0]["quantity"] for p in phases] == [1, 2, 2]
        assert phases[1]["proration_behavior"] == "create_prorations"
        listed = served.all("/v1/subscription_schedules", {"customer": sub["customer"]})
        assert [s["id"] for s in listed] == [sched_id]
        [upd] = events(served, "subscription_schedule.updated")
        assert upd["created"] == ts(15.5)
        assert upd["data"]["previous_attributes"]["current_phase"] == {
            "start_date": ts(0),
            "end_date": ts(15.5),
        }
        [changed] = [
            e for e in events(served, "customer.subscription.updated") if e["created"] == ts(15.5)
        ]
        [old_item] = changed["data"]["previous_attributes"]["items"]["data"]
        assert (old_item["price"]["unit_amount"], old_item["quantity"]) == (3000, 1)
        [new_item] = changed["data"]["object"]["items"]["data"]
        assert (new_item["price"]["unit_amount"], new_item["quantity"]) == (5000, 2)


def test_the_schedule_is_released_after_its_last_phase() -> None:
    with account(SUB, now_days=80) as served:
        sub = subscription(served)
        assert sub["schedule"] is None
        [sched] = served.all("/v1/subscription_schedules")
        assert sched["status"] == "released"
        assert sched["released_at"] == ts(73)
        assert sched["released_subscription"] == sub["id"]
        assert sched["subscription"] is None
        assert sched["current_phase"] is None
        [released] = events(served, "subscription_schedule.released")
        assert released["created"] == ts(73)
        [upd] = [
            e for e in events(served, "customer.subscription.updated") if e["created"] == ts(73)
        ]
        assert upd["data"]["previous_attributes"] == {"schedule": sched["id"]}


def test_a_schedule_has_the_fixture_keys(stripe_fixtures: dict) -> None:
    fixture = stripe_fixtures["subscription_schedule"]
    with account(SUB, now_days=40) as served:
        [sched] = served.all("/v1/subscription_schedules")
        assert set(sched) == set(fixture)
        assert set(sched["phases"][0]) == set(fixture["phases"][0])
        assert set(sched["phases"][0]["items"][0]) == set(fixture["phases"][0]["items"][0])
        assert set(sched["default_settings"]) <= set(fixture["default_settings"])
