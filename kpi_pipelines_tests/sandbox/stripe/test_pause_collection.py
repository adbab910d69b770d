"""Invoices Stripe does not collect while the subscription stays `active` (so it counts):
pause_collection (void, keep_as_draft, mark_uncollectible; resumes_at or a ResumeCollection),
and a renewal invoice the integration leaves a draft (auto_advance false). Periods start on
day 0, 31 (Feb 1), 59 (Mar 1) and 90 (Apr 1)."""

from __future__ import annotations

import pytest

from kpi_pipelines.sandbox.stripe.scenarios import (
    DraftRenewal,
    PauseCollection,
    PaymentFails,
    ResumeCollection,
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


def _updates(served) -> list[tuple[int, dict, object]]:
    """(day, previous_attributes, pause_collection) of the subscription updates that changed
    pause_collection (Stripe keeps events 30 days: only those of the last 30 are served)."""
    return [
        (
            round((e["created"] - ts(0)) / 86_400, 2),
            e["data"]["previous_attributes"],
            e["data"]["object"]["pause_collection"],
        )
        for e in events(served, "customer.subscription.updated")
        if "pause_collection" in e["data"]["previous_attributes"]
    ]


def test_void_while_paused_then_resumed() -> None:
    # Paused on day 55, resumed on day 95: the renewals of day 59 and 90 are voided.
    sub = SubscriptionScript(
        price=monthly(50), events=[PauseCollection(55, "void"), ResumeCollection(95)]
    )
    paused = {"behavior": "void", "resumes_at": None}
    with account(sub, now_days=80) as served:
        got = subscription(served)
        assert (got["status"], got["pause_collection"]) == ("active", paused)
        assert _updates(served) == [(55, {"pause_collection": None}, paused)]
        [voided] = events(served, "invoice.voided")
        assert voided["created"] == ts(59) + 1
    with account(sub, now_days=125) as served:
        for day in (5, 56, 70, 100, 121):
            assert mrr(served, day) == 50.0  # status active throughout
        assert subscription(served)["pause_collection"] is None
        statuses = [i["status"] for i in invoices(served)]
        assert statuses == ["paid", "paid", "void", "void", "paid"]
        for inv in invoices(served)[2:4]:
            assert inv["amount_paid"] == 0
            assert inv["attempt_count"] == 0
            assert inv["auto_advance"] is False
            assert inv["number"] is not None
            assert inv["status_transitions"]["voided_at"] == inv["created"] + 1
        assert len(served.all("/v1/charges")) == 3  # days 0, 31 and 120
        assert _updates(served) == [(95, {"pause_collection": paused}, None)]


def test_keep_as_draft_until_resumes_at() -> None:
    sub = SubscriptionScript(
        price=monthly(50), events=[PauseCollection(10, "keep_as_draft", resumes_at=45)]
    )
    with account(sub, now_days=40) as served:
        got = subscription(served)
        assert got["status"] == "active"
        assert got["pause_collection"] == {"behavior": "keep_as_draft", "resumes_at": ts(45)}
        assert mrr(served, 40) == 50.0
    with account(sub, now_days=70) as served:
        first, draft, renewal = invoices(served)
        assert (first["status"], draft["status"], renewal["status"]) == ("paid", "draft", "paid")
        assert draft["auto_advance"] is False
        assert draft["number"] is None
        assert draft["automatically_finalizes_at"] is None
        assert draft["status_transitions"]["finalized_at"] is None
        assert draft["amount_paid"] == 0
        assert draft["total"] == 5000
        assert renewal["number"].endswith("-0002")  # a draft takes no number
        assert subscription(served)["pause_collection"] is None
        # Stripe clears pause_collection at resumes_at.
        before = {"behavior": "keep_as_draft", "resumes_at": ts(45)}
        assert _updates(served) == [(45, {"pause_collection": before}, None)]
        finalized = [e["created"] for e in events(served, "invoice.finalized")]
        assert finalized == [renewal["created"] + HOUR]  # not the draft


def test_mark_uncollectible_while_paused() -> None:
    sub = SubscriptionScript(
        price=monthly(50), events=[as_event(("pause_collection", 10, "mark_uncollectible"))]
    )
    with account(sub, now_days=40) as served:
        assert mrr(served, 35) == 50.0
        _, renewal = invoices(served)
        assert renewal["status"] == "uncollectible"
        assert renewal["status_transitions"]["marked_uncollectible_at"] == ts(31) + 1
        assert renewal["attempt_count"] == 0
        assert subscription(served)["status"] == "active"
        [marked] = events(served, "invoice.marked_uncollectible")
        assert marked["data"]["object"]["id"] == renewal["id"]


def test_a_renewal_left_a_draft_by_the_integration() -> None:
    sub = SubscriptionScript(price=monthly(30), events=[DraftRenewal(35)])
    with account(sub, now_days=60) as served:
        assert mrr(served, 40) == 30.0
        assert mrr(served, 59.5) == 30.0
        first, draft, renewal = invoices(served)
        assert [i["status"] for i in (first, draft, renewal)] == ["paid", "draft", "paid"]
        assert draft["auto_advance"] is False
        assert draft["number"] is None
        assert draft["attempt_count"] == 0
        assert renewal["number"].endswith("-0002")
        assert subscription(served)["status"] == "active"
        [updated] = events(served, "invoice.updated")
        assert updated["created"] == ts(31) + 60
        assert updated["data"]["previous_attributes"] == {
            "auto_advance": True,
            "automatically_finalizes_at": ts(31) + HOUR,
        }
        assert len(served.all("/v1/charges")) == 2


@pytest.mark.parametrize(
    ("sub", "match"),
    [
        (
            SubscriptionScript(price=monthly(30), events=[PauseCollection(10), PaymentFails(32)]),
            "not collected",
        ),
        (SubscriptionScript(price=monthly(30), events=[DraftRenewal(5)]), "only a renewal"),
        (SubscriptionScript(price=monthly(30), events=[ResumeCollection(5)]), "not paused"),
    ],
)
def test_collection_scripts_that_make_no_sense_are_refused(sub, match) -> None:
    with pytest.raises(ValueError, match=match), account(sub, now_days=40):
        pass
