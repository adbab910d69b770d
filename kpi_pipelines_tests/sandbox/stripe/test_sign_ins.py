"""Customers signing in (`StripeSandboxConfig.sign_ins_from`): the product records each
customer's latest sign-in in their metadata, one customer every `sign_in_seconds`, each a
`customer.updated` event; the demo accounts do, so `kpi-pipelines dev` gets webhooks within
minutes of starting."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from kpi_pipelines.sandbox.stripe import StripeSandbox
from kpi_pipelines.sandbox.stripe.demo import SIGN_IN_SECONDS, account

START = datetime(2025, 3, 1, tzinfo=UTC)
LIVE = START + timedelta(days=365)


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def sign_ins(sandbox: StripeSandbox, since: datetime) -> list[dict]:
    return [
        event
        for event in sandbox.events_since(since)
        if "last_sign_in" in event["data"].get("previous_attributes", {}).get("metadata", {})
    ]


def test_customers_sign_in_in_turn_each_a_customer_updated_event() -> None:
    sandbox = StripeSandbox(
        seed=3, customers=20, start=START, now=LIVE, sign_ins_from=LIVE, sign_in_seconds=60
    )
    sandbox.advance(timedelta(minutes=45))
    events = sign_ins(sandbox, LIVE)
    live = int(LIVE.timestamp())
    assert [e["created"] for e in events] == list(range(live, live + 45 * 60 + 1, 60))
    assert {e["type"] for e in events} == {"customer.updated"}
    customers = [e["data"]["object"]["id"] for e in events]
    assert len(set(customers[:20])) == 20 and customers[20:40] == customers[:20]
    for event in events:
        customer = event["data"]["object"]
        assert customer["metadata"]["last_sign_in"] == _iso(event["created"])
        before = event["data"]["previous_attributes"]["metadata"]["last_sign_in"]
        # the sign-up counts as the first sign-in; the next is a lap of 20 minutes later
        first = event["created"] < live + 20 * 60
        assert before == _iso(customer["created"] if first else event["created"] - 20 * 60)
    # a customer as listed now shows its latest sign-in
    last = sandbox.sim(sandbox.customer_index(customers[-1]))
    listed = sandbox.renderer.customer(last, sandbox.now_ts)
    assert listed["metadata"]["last_sign_in"] == _iso(events[-1]["created"])


def test_the_default_business_records_no_sign_ins() -> None:
    sandbox = StripeSandbox(seed=3, customers=20, start=START, now=LIVE)
    sandbox.advance(timedelta(days=2))
    assert sign_ins(sandbox, LIVE) == []
    customer = sandbox.renderer.customer(sandbox.sim(0), sandbox.now_ts)
    assert customer["metadata"] == {"sandbox_index": "0"}


def test_each_demo_account_has_an_event_every_few_minutes_on_the_real_clock() -> None:
    """Whatever minute `dev` starts at, each demo account's next event is at most
    SIGN_IN_SECONDS away, and the two accounts take their turns apart."""
    anchor = datetime(2026, 12, 1, tzinfo=UTC)
    firsts = []
    for workspace in ("acme", "globex"):
        sandbox = account(workspace, anchor, anchor)
        sandbox.advance(timedelta(hours=2))
        times = [event["created"] for event in sandbox.events_since(anchor)]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert times[0] - int(anchor.timestamp()) < SIGN_IN_SECONDS
        assert max(gaps) <= SIGN_IN_SECONDS, workspace
        firsts.append(sign_ins(sandbox, anchor)[0]["created"])
    assert firsts[0] != firsts[1]
