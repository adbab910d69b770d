"""Stripe's list semantics, errors, auth, API versions and scripted faults."""

from __future__ import annotations

import base64
import time

import httpx
import pytest

from kpi_pipelines_tests.sandbox.stripe.conftest import Served


def error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert {"type", "code", "message", "param"} <= set(body["error"])
    return body["error"]


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc"])
def test_limit_out_of_bounds_is_refused(served: Served, limit: str) -> None:
    err = error(served.get("/v1/charges", {"limit": limit}), 400)
    assert err["type"] == "invalid_request_error"
    assert err["param"] == "limit"


def test_limit_default_and_bounds(served: Served) -> None:
    assert len(served.ok("/v1/charges")["data"]) == 10
    assert len(served.ok("/v1/charges", {"limit": 1})["data"]) == 1
    page = served.ok("/v1/charges", {"limit": 100})
    assert len(page["data"]) == 100
    assert page["object"] == "list"
    assert page["url"] == "/v1/charges"
    assert page["has_more"] is True


@pytest.mark.parametrize("path", ["/v1/charges", "/v1/invoices", "/v1/customers", "/v1/events"])
def test_paging_both_directions_has_no_gaps_or_duplicates(served: Served, path: str) -> None:
    everything = served.all(path)
    assert len(everything) >= 100
    created = [o["created"] for o in everything]
    assert created == sorted(created, reverse=True), "newest first"
    forward, params = [], {"limit": 7}
    while True:
        page = served.ok(path, params)
        forward += page["data"]
        if not page["has_more"]:
            break
        params = {"limit": 7, "starting_after": page["data"][-1]["id"]}
    assert [o["id"] for o in forward] == [o["id"] for o in everything]
    assert len({o["id"] for o in forward}) == len(forward)
    # Backwards from the oldest object: pages are still newest first, adjacent to the cursor.
    backward: list[dict] = []
    cursor = everything[-1]["id"]
    while True:
        page = served.ok(path, {"limit": 9, "ending_before": cursor})
        if page["data"]:
            assert [o["created"] for o in page["data"]] == sorted(
                (o["created"] for o in page["data"]), reverse=True
            )
            backward = page["data"] + backward
            cursor = page["data"][0]["id"]
        if not page["has_more"]:
            break
    assert [o["id"] for o in backward] == [o["id"] for o in everything[:-1]]


def test_created_filters(served: Served) -> None:
    everything = served.all("/v1/invoices")
    mid = everything[len(everything) // 2]["created"]
    lo = everything[int(len(everything) * 0.8)]["created"]
    cases = {
        "gte": lambda c: c >= mid,
        "gt": lambda c: c > mid,
        "lte": lambda c: c <= mid,
        "lt": lambda c: c < mid,
    }
    for op, pred in cases.items():
        got = served.all("/v1/invoices", {f"created[{op}]": mid})
        assert [o["id"] for o in got] == [o["id"] for o in everything if pred(o["created"])], op
    window = served.all("/v1/invoices", {"created[gte]": lo, "created[lt]": mid})
    assert [o["id"] for o in window] == [o["id"] for o in everything if lo <= o["created"] < mid]
    exact = served.all("/v1/invoices", {"created": mid})
    assert exact and all(o["created"] == mid for o in exact)
    err = error(served.get("/v1/invoices", {"created[after]": mid}), 400)
    assert err["param"] == "created[after]"


def test_subscription_status_filters(served: Served) -> None:
    default = served.all("/v1/subscriptions")
    everything = served.all("/v1/subscriptions", {"status": "all"})
    canceled = served.all("/v1/subscriptions", {"status": "canceled"})
    assert canceled and all(s["status"] == "canceled" for s in canceled)
    assert all(s["status"] != "canceled" for s in default)
    assert len(everything) == len(default) + len(canceled)
    assert {s["id"] for s in everything} == {s["id"] for s in default} | {s["id"] for s in canceled}
    statuses = {s["status"] for s in everything}
    assert {"active", "canceled"} <= statuses
    for status in statuses - {"canceled"}:
        subset = served.all("/v1/subscriptions", {"status": status})
        assert [s["id"] for s in subset] == [s["id"] for s in everything if s["status"] == status]
    err = error(served.get("/v1/subscriptions", {"status": "sleeping"}), 400)
    assert err["param"] == "status"
    customer = everything[0]["customer"]
    mine = served.all("/v1/subscriptions", {"customer": customer, "status": "all"})
    assert mine and all(s["customer"] == customer for s in mine)


def test_scoped_lists(served: Served) -> None:
    sub = served.all("/v1/subscriptions", {"status": "all"})[0]
    invoices = served.all("/v1/invoices", {"subscription": sub["id"]})
    assert invoices
    assert all(i["parent"]["subscription_details"]["subscription"] == sub["id"] for i in invoices)
    by_customer = served.all("/v1/invoices", {"customer": sub["customer"]})
    assert {i["id"] for i in invoices} <= {i["id"] for i in by_customer}
    charges = served.all("/v1/charges", {"customer": sub["customer"]})
    assert all(c["customer"] == sub["customer"] for c in charges)
    items = served.ok("/v1/subscription_items", {"subscription": sub["id"]})
    assert items["data"] and all(i["subscription"] == sub["id"] for i in items["data"])
    err = error(served.get("/v1/subscription_items"), 400)
    assert err["code"] == "parameter_missing"
    refunded = next(c for c in served.all("/v1/charges") if c["refunds"]["data"])
    refunds = served.ok("/v1/refunds", {"charge": refunded["id"]})["data"]
    assert [r["id"] for r in refunds] == [r["id"] for r in refunded["refunds"]["data"]]
    paid = served.all("/v1/invoices", {"status": "paid"})
    assert paid and all(i["status"] == "paid" for i in paid)


def test_expand(served: Served) -> None:
    page = served.ok(
        "/v1/subscriptions",
        [
            ("status", "all"),
            ("limit", "100"),
            ("expand[]", "data.discounts"),
            ("expand[]", "data.latest_invoice"),
            ("expand[]", "data.items.data.price"),
            ("expand[]", "data.customer"),
        ],
    )
    for sub in page["data"]:
        assert all(d["object"] == "discount" for d in sub["discounts"])
        assert sub["latest_invoice"]["object"] == "invoice"
        assert sub["customer"]["object"] == "customer"
        assert sub["items"]["data"][0]["price"]["object"] == "price"
    with_coupon = served.ok(
        "/v1/subscriptions",
        {"status": "all", "limit": 100, "expand[0]": "data.discounts.source.coupon"},
    )
    coupons = [d["source"]["coupon"] for s in with_coupon["data"] for d in s["discounts"]]
    assert coupons and all(c["object"] == "coupon" for c in coupons)
    one = served.ok(
        f"/v1/subscriptions/{page['data'][0]['id']}", {"expand[]": "items.data.price.tiers"}
    )
    assert "tiers" in one["items"]["data"][0]["price"]
    charge = served.ok("/v1/charges", {"expand[]": "data.balance_transaction", "limit": 3})["data"]
    assert any(isinstance(c["balance_transaction"], dict) for c in charge)
    # Four levels at most; unknown properties and list paths without data. are refused.
    for bad in ["data.items.data.price.tiers", "data.nope", "discounts"]:
        err = error(served.get("/v1/subscriptions", {"expand[]": bad}), 400)
        assert err["type"] == "invalid_request_error"
        assert err["param"] == "expand"


def test_errors_404_and_unknown_parameters(served: Served) -> None:
    err = error(served.get("/v1/customers/cus_doesnotexist"), 404)
    assert err == {
        "code": "resource_missing",
        "doc_url": "https://stripe.com/docs/error-codes/resource-missing",
        "message": "No such customer: 'cus_doesnotexist'",
        "param": "id",
        "type": "invalid_request_error",
    }
    for path in [
        "/v1/subscriptions/sub_1x",
        "/v1/invoices/in_x",
        "/v1/events/evt_x",
        "/v1/prices/p",
    ]:
        assert error(served.get(path), 404)["code"] == "resource_missing"
    err = error(served.get("/v1/charges", {"starting_after": "ch_nope"}), 404)
    assert err["param"] == "starting_after"
    err = error(served.get("/v1/charges", {"colour": "blue"}), 400)
    assert err["code"] == "parameter_unknown" and err["param"] == "colour"
    first = served.ok("/v1/charges", {"limit": 1})["data"][0]["id"]
    err = error(served.get("/v1/charges", {"starting_after": first, "ending_before": first}), 400)
    assert "only specify one" in err["message"]
    assert error(served.get("/v1/unknown_things"), 404)["type"] == "invalid_request_error"


def test_authentication(served: Served) -> None:
    url = served.base_url + "/v1/customers"
    err = error(httpx.get(url), 401)
    assert "did not provide an API key" in err["message"]
    err = error(httpx.get(url, headers={"Authorization": "Bearer sk_test_wrong_key_1234"}), 401)
    assert err["message"].startswith("Invalid API Key provided: sk_test_")
    assert err["message"].endswith("1234") and "wrong" not in err["message"]
    basic = base64.b64encode(f"{served.sandbox.api_key}:".encode()).decode()
    assert httpx.get(url, headers={"Authorization": f"Basic {basic}"}).status_code == 200


def test_api_versions_move_current_period(served: Served) -> None:
    sub = served.all("/v1/subscriptions")[0]
    current = served.ok(f"/v1/subscriptions/{sub['id']}")
    assert "current_period_end" not in current
    assert "current_period_end" in current["items"]["data"][0]
    old = served.get(f"/v1/subscriptions/{sub['id']}", headers={"Stripe-Version": "2024-06-20"})
    assert old.headers["Stripe-Version"] == "2024-06-20"
    old_sub = old.json()
    assert old_sub["current_period_end"] == current["items"]["data"][0]["current_period_end"]
    assert "current_period_end" not in old_sub["items"]["data"][0]
    inv_new = served.ok("/v1/invoices", {"limit": 1})["data"][0]
    inv_old = served.ok("/v1/invoices", {"limit": 1}, headers={"Stripe-Version": "2024-06-20"})[
        "data"
    ][0]
    assert inv_new["subscription"] is None
    assert inv_old["subscription"] == inv_new["parent"]["subscription_details"]["subscription"]
    err = error(served.get("/v1/customers", headers={"Stripe-Version": "yesterday"}), 400)
    assert "API version" in err["message"]


def test_events_filters_and_window(served: Served) -> None:
    sb = served.sandbox
    events = served.all("/v1/events")
    window_start = sb.now_ts - 30 * 86_400
    assert events and all(window_start <= e["created"] <= sb.now_ts for e in events)
    invoice_events = served.all("/v1/events", {"type": "invoice.*"})
    assert invoice_events and all(e["type"].startswith("invoice.") for e in invoice_events)
    assert len(invoice_events) == sum(e["type"].startswith("invoice.") for e in events)
    wanted = ["customer.subscription.updated", "charge.succeeded"]
    both = served.all("/v1/events", [("types[]", wanted[0]), ("types[]", wanted[1])])
    assert {e["type"] for e in both} == set(wanted)
    assert len(both) == sum(e["type"] in wanted for e in events)
    recent = served.all("/v1/events", {"created[gte]": sb.now_ts - 86_400})
    assert [e["id"] for e in recent] == [
        e["id"] for e in events if e["created"] >= sb.now_ts - 86_400
    ]
    # Older events exist in the simulation but are not kept by the API.
    old = sb.events_since(sb.start)[0]
    assert old["created"] < window_start
    assert error(served.get(f"/v1/events/{old['id']}"), 404)["code"] == "resource_missing"
    assert served.ok(f"/v1/events/{events[0]['id']}") == events[0]
    types = {e["type"] for e in events}
    for required in [
        "customer.created",
        "customer.updated",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "invoice.payment_failed",
        "charge.succeeded",
        "price.created",
        "coupon.created",
    ]:
        assert required in types, required
    updates = [e for e in events if e["type"] == "customer.subscription.updated"]
    assert all(e["data"]["previous_attributes"] for e in updates)


def test_rate_limit_storm(fresh: Served) -> None:
    fresh.sandbox.faults.storm(3)
    for _ in range(3):
        response = fresh.get("/v1/customers")
        err = error(response, 429)
        assert err["code"] == "rate_limit"
        assert response.headers["Stripe-Should-Retry"] == "true"
        assert "Retry-After" not in response.headers
    assert fresh.get("/v1/customers").status_code == 200
    fresh.sandbox.faults.storm(1, status=429, should_retry=False)
    assert fresh.get("/v1/customers").headers["Stripe-Should-Retry"] == "false"


def test_5xx_outage_slowness_and_truncation(fresh: Served) -> None:
    faults = fresh.sandbox.faults
    faults.fail_every(3)
    statuses = [fresh.get("/v1/customers").status_code for _ in range(6)]
    assert statuses == [200, 200, 500, 200, 200, 500]
    faults.clear().down()
    for _ in range(3):
        assert error(fresh.get("/v1/charges"), 503)["type"] == "api_error"
    faults.up()
    assert fresh.get("/v1/charges").status_code == 200
    faults.slow(0.2)
    t0 = time.perf_counter()
    assert fresh.get("/v1/charges", {"limit": 1}).status_code == 200
    assert time.perf_counter() - t0 >= 0.2
    faults.clear().truncate(1)
    response = fresh.get("/v1/charges")
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()
    assert fresh.get("/v1/charges").json()["object"] == "list"
    faults.configure({"truncate": {"count": 1, "after": 2}})
    readable = []
    for _ in range(4):
        try:
            readable.append(fresh.get("/v1/charges", {"limit": 1}).json()["object"] == "list")
        except ValueError:
            readable.append(False)
    assert readable == [True, True, False, True]


def test_control_endpoints(fresh: Served) -> None:
    state = fresh.client.get("/_sandbox/state").json()
    assert state["now"] == fresh.sandbox.now_ts
    moved = fresh.client.post("/_sandbox/advance", json={"days": 2}).json()
    assert moved["now"] == state["now"] + 2 * 86_400
    fresh.client.post("/_sandbox/faults", json={"storm": {"count": 1}})
    assert fresh.get("/v1/customers").status_code == 429
    assert httpx.get(fresh.base_url + "/_sandbox/state").status_code == 401


def test_customers_filtered_by_email(served: Served) -> None:
    someone = served.ok("/v1/customers", {"limit": 3})["data"][2]
    found = served.ok("/v1/customers", {"email": someone["email"]})
    assert [c["id"] for c in found["data"]] == [someone["id"]]
    assert found["has_more"] is False
    after = served.ok("/v1/customers", {"email": someone["email"], "starting_after": someone["id"]})
    assert after["data"] == [] and after["has_more"] is False
    other = served.ok("/v1/customers", {"limit": 1})["data"][0]["id"]
    err = error(
        served.get("/v1/customers", {"email": someone["email"], "starting_after": other}), 404
    )
    assert err["param"] == "starting_after" and other in err["message"]
