"""Stripe's events list is eventually consistent; coupons can be deleted.

- A clock stopped inside a second shows only that second's first events; the rest appear,
  with the same `created`, once the second is over.
- `delay_events` makes events appear some time after their `created`, or never (lost), while
  the objects they describe change at once.
- `delete_coupon` removes a coupon from its list (404 on retrieval, a coupon.deleted event)
  and leaves the discounts that use it alone.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import timedelta

import pytest

from kpi_pipelines.sandbox.stripe import StripeSandbox
from kpi_pipelines_tests.sandbox.stripe.conftest import Served

CATALOG_TYPES = ("product.created", "price.created", "coupon.created", "coupon.deleted")


def future_events(sandbox: StripeSandbox, days: int) -> list[dict]:
    """The events the next `days` bring, from a twin sandbox (same config, later clock):
    the simulation is causal, so they are the ones `sandbox` will show."""
    twin = StripeSandbox(sandbox.config)
    twin.advance(timedelta(days=days))
    return twin.events_since(sandbox.now_ts + 1)


def ids(served: Served, params: dict) -> list[str]:
    return [e["id"] for e in served.all("/v1/events", params)]


def test_a_clock_inside_a_second_shows_only_its_first_events(fresh: Served) -> None:
    events = future_events(fresh.sandbox, 20)
    per_second = Counter(e["created"] for e in events)
    t = next(
        t
        for t, n in sorted(per_second.items())
        if n >= 2 and not any(e["created"] == t and e["type"] in CATALOG_TYPES for e in events)
    )
    in_second = [e["id"] for e in events if e["created"] == t]  # oldest first
    fresh.sandbox.advance(t, into_second=0.5)
    happened = in_second[: math.ceil(len(in_second) / 2)]
    assert ids(fresh, {"created": t}) == happened[::-1]  # newest first
    late = in_second[-1]
    assert fresh.get(f"/v1/events/{late}").status_code == 404
    assert fresh.ok(f"/v1/events/{happened[0]}")["id"] == happened[0]
    with pytest.raises(ValueError):
        fresh.sandbox.advance(t, into_second=0.2)  # the clock only moves forward
    fresh.sandbox.advance(t)  # the second is over
    assert ids(fresh, {"created": t}) == in_second[::-1]
    assert fresh.ok(f"/v1/events/{late}")["created"] == t


def test_delayed_events_appear_late_and_their_objects_change_at_once(fresh: Served) -> None:
    sandbox = fresh.sandbox
    events = future_events(sandbox, 20)
    charge_event = next(e for e in events if e["type"] == "charge.succeeded")
    t = charge_event["created"]
    sandbox.delay_events(600, types=["charge.succeeded"], created_from=sandbox.now_ts)
    sandbox.advance(t + 60)
    listed = ids(fresh, {"created[gte]": t - 3600})
    assert charge_event["id"] not in listed
    assert [i for i in listed if i in {e["id"] for e in events}]  # other events are there
    assert fresh.get(f"/v1/events/{charge_event['id']}").status_code == 404
    charge = charge_event["data"]["object"]
    assert fresh.ok(f"/v1/charges/{charge['id']}")["status"] == "succeeded"
    sandbox.advance(t + 600)
    assert charge_event["id"] in ids(fresh, {"created[gte]": t - 3600})


def test_lost_events_never_appear_and_shares_are_stable(fresh: Served) -> None:
    sandbox = fresh.sandbox
    start = sandbox.now_ts
    sandbox.delay_events(None, types=["customer.subscription.updated"], created_from=start)
    sandbox.delay_events(None, types=["invoice.created"], created_from=start, share=0.5)
    sandbox.advance(timedelta(days=15))
    truth = sandbox.events_since(start + 1)
    listed = fresh.all("/v1/events", {"created[gt]": start})
    listed_types = Counter(e["type"] for e in listed)
    assert listed_types["customer.subscription.updated"] == 0
    true_types = Counter(e["type"] for e in truth)
    assert true_types["customer.subscription.updated"] > 0
    assert 0 < listed_types["invoice.created"] < true_types["invoice.created"]
    assert fresh.all("/v1/events", {"created[gt]": start}) == listed  # the same ones, each time
    sandbox.clear_event_delays()
    assert len(fresh.all("/v1/events", {"created[gt]": start})) == len(truth)


def test_a_deleted_coupon_leaves_the_list_and_keeps_applying(fresh: Served) -> None:
    sandbox = fresh.sandbox
    subs = fresh.all(
        "/v1/subscriptions", {"status": "all", "expand[]": "data.discounts.source.coupon"}
    )
    used = Counter(d["source"]["coupon"]["id"] for s in subs for d in s["discounts"])
    coupon_id = used.most_common(1)[0][0]
    coupons = sandbox.counts()["coupons"]
    sandbox.delete_coupon(coupon_id)
    assert coupon_id not in {c["id"] for c in fresh.all("/v1/coupons")}
    assert sandbox.counts()["coupons"] == coupons - 1
    assert fresh.get(f"/v1/coupons/{coupon_id}").json()["error"]["code"] == "resource_missing"
    [deleted] = fresh.all("/v1/events", {"type": "coupon.deleted"})
    assert deleted["data"]["object"]["id"] == coupon_id
    assert deleted["created"] == sandbox.now_ts
    sandbox.advance(timedelta(days=1))
    assert coupon_id not in {c["id"] for c in fresh.all("/v1/coupons")}
    subs = fresh.all(
        "/v1/subscriptions", {"status": "all", "expand[]": "data.discounts.source.coupon"}
    )
    still = Counter(d["source"]["coupon"]["id"] for s in subs for d in s["discounts"])
    assert still[coupon_id] >= 1
    with pytest.raises(KeyError):
        sandbox.delete_coupon(coupon_id)


def test_visibility_can_be_scripted_over_http(fresh: Served) -> None:
    start = fresh.sandbox.now_ts
    spec = {"seconds": None, "types": ["invoice.created"], "created_from": start}
    assert fresh.client.post("/_sandbox/event_delays", json=spec).status_code == 200
    fresh.client.post("/_sandbox/advance", json={"days": 10})
    listed = fresh.all("/v1/events", {"created[gt]": start})
    assert listed and not [e for e in listed if e["type"] == "invoice.created"]
    fresh.client.post("/_sandbox/event_delays", json={"clear": True})
    listed = fresh.all("/v1/events", {"created[gt]": start})
    assert [e for e in listed if e["type"] == "invoice.created"]
    moved = fresh.client.post(
        "/_sandbox/advance", json={"to": fresh.sandbox.now_ts + 5, "into_second": 0.5}
    )
    assert moved.json()["now"] == start + 10 * 86_400 + 5
    assert fresh.sandbox.event_visibility.into_second == 0.5
