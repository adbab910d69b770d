"""Every object the sandbox serves has exactly the keys of Stripe's own example object.

The examples are `stripe-fixtures3.json` (Stripe's OpenAPI fixtures, current API shape). Older
API versions (before 2025-03-31.basil) move `current_period_start/end` from the subscription
items to the subscription.
"""

from __future__ import annotations

import httpx
import pytest

from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.sandbox.stripe import StripeSandbox, create_app
from kpi_pipelines_tests.sandbox.stripe.conftest import Served

CURRENT = "2025-09-30.clover"
OLD = "2024-06-20"
VERSIONS = (CURRENT, OLD)
PERIOD = {"current_period_start", "current_period_end"}

RESOURCES = {
    # list path: (fixture name, params)
    "/v1/customers": ("customer", {}),
    "/v1/products": ("product", {}),
    "/v1/prices": ("price", {}),
    "/v1/coupons": ("coupon", {}),
    "/v1/tax_rates": ("tax_rate", {}),
    "/v1/subscriptions": ("subscription", {"status": "all"}),
    "/v1/invoices": ("invoice", {}),
    "/v1/charges": ("charge", {}),
    "/v1/refunds": ("refund", {}),
    "/v1/balance_transactions": ("balance_transaction", {}),
    "/v1/events": ("event", {}),
}


def keys(fixtures: dict, name: str, version: str = CURRENT) -> set[str]:
    out = set(fixtures[name])
    if version == OLD and name == "subscription":
        out |= PERIOD
    if version == OLD and name == "subscription_item":
        out -= PERIOD
    return out


def sample(objects: list[dict], n: int = 60) -> list[dict]:
    step = max(1, len(objects) // n)
    return objects[::step]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", sorted(RESOURCES))
def test_list_objects_have_the_fixture_keys(
    served: Served, stripe_fixtures: dict, path: str, version: str
) -> None:
    name, params = RESOURCES[path]
    if path == "/v1/events":
        objects = served.ok(path, {"limit": 100}, headers={"Stripe-Version": version})["data"]
    else:
        objects = served.all(path, params, version)
    assert objects, path
    for obj in sample(objects):
        assert set(obj) == keys(stripe_fixtures, name, version), (path, obj["id"])
        detail = served.ok(f"{path}/{obj['id']}", headers={"Stripe-Version": version})
        assert set(detail) == keys(stripe_fixtures, name, version), (path, obj["id"])


@pytest.mark.parametrize("version", VERSIONS)
def test_subscription_items_prices_and_plans(
    served: Served, stripe_fixtures: dict, version: str
) -> None:
    subs = served.all("/v1/subscriptions", {"status": "all"})
    item_keys = keys(stripe_fixtures, "subscription_item", version)
    price_fixture = stripe_fixtures["price"]
    seen = 0
    for sub in sample(subs, 40):
        page = served.ok("/v1/subscriptions/" + sub["id"], headers={"Stripe-Version": version})
        assert page["items"].keys() == stripe_fixtures["subscription"]["items"].keys()
        listed = served.ok(
            "/v1/subscription_items",
            {"subscription": sub["id"]},
            headers={"Stripe-Version": version},
        )
        for item in page["items"]["data"] + listed["data"]:
            seen += 1
            assert set(item) == item_keys
            assert set(item["price"]) == set(price_fixture)
            assert set(item["price"]["recurring"]) == set(price_fixture["recurring"])
            assert set(item["plan"]) == set(stripe_fixtures["plan"])
            if version == OLD:
                assert {"current_period_start", "current_period_end"} <= set(page)
    assert seen


def test_invoice_lines_and_nested_objects(served: Served, stripe_fixtures: dict) -> None:
    line_fixture = stripe_fixtures["line_item"]
    inv_fixture = stripe_fixtures["invoice"]
    invoices = served.all("/v1/invoices")
    for inv in sample(invoices, 80):
        assert set(inv["status_transitions"]) == set(inv_fixture["status_transitions"])
        assert set(inv["parent"]) == set(inv_fixture["parent"])
        assert set(inv["parent"]["subscription_details"]) == set(
            inv_fixture["parent"]["subscription_details"]
        )
        assert set(inv["lines"]) == set(inv_fixture["lines"])
        listed = served.ok(f"/v1/invoices/{inv['id']}/lines")
        assert [line["id"] for line in listed["data"]] == [
            line["id"] for line in inv["lines"]["data"]
        ]
        for line in inv["lines"]["data"]:
            assert set(line) == set(line_fixture)
            assert set(line["parent"]) == set(line_fixture["parent"])
            assert set(line["parent"]["subscription_item_details"]) == set(
                line_fixture["parent"]["subscription_item_details"]
            )
            assert set(line["period"]) == set(line_fixture["period"])
            # The fixture's example leaves price_details out; Stripe's schema has it (and the
            # contract needs it): the pricing hash is the example's plus price_details.
            assert set(line["pricing"]) == set(line_fixture["pricing"]) | {"price_details"}
            assert set(line["pricing"]["price_details"]) == {"price", "product"}


def test_charges_refunds_and_discounts(served: Served, stripe_fixtures: dict) -> None:
    charge_fixture = stripe_fixtures["charge"]
    charges = served.all("/v1/charges")
    assert {c["status"] for c in charges} == {"succeeded", "failed"}
    refunded = [c for c in charges if c["refunds"]["data"]]
    assert refunded
    for charge in sample(charges, 50) + refunded[:5]:
        assert set(charge["refunds"]) == set(charge_fixture["refunds"])
        for refund in charge["refunds"]["data"]:
            assert set(refund) == set(stripe_fixtures["refund"])
        assert set(charge["outcome"]) == set(charge_fixture["outcome"])
        assert set(charge["billing_details"]) == set(charge_fixture["billing_details"])
        details = charge["payment_method_details"]
        assert set(details) == set(charge_fixture["payment_method_details"])
        assert set(details["card"]) == set(charge_fixture["payment_method_details"]["card"])
    subs = served.all("/v1/subscriptions", {"status": "all", "expand[]": "data.discounts"})
    discounts = [d for s in subs for d in s["discounts"]]
    assert discounts
    for disc in discounts:
        assert set(disc) == set(stripe_fixtures["discount"])
        assert set(disc["source"]) == set(stripe_fixtures["discount"]["source"])
    invs = served.all("/v1/invoices", {"expand[]": "data.discounts"})
    assert any(d["object"] == "discount" for inv in invs for d in inv["discounts"])


def test_price_tiers_and_balance(served: Served, stripe_fixtures: dict) -> None:
    prices = served.all("/v1/prices", {"expand[]": "data.tiers"})
    tiered = [p for p in prices if p["billing_scheme"] == "tiered"]
    assert {p["tiers_mode"] for p in tiered} == {"graduated", "volume"}
    for price in prices:
        assert set(price) == set(stripe_fixtures["price"]) | {"tiers"}
    for price in tiered:
        for tier in price["tiers"]:
            assert set(tier) == {
                "flat_amount",
                "flat_amount_decimal",
                "unit_amount",
                "unit_amount_decimal",
                "up_to",
            }
    balance = served.ok("/v1/balance")
    assert set(balance) == set(stripe_fixtures["balance"])


def test_event_objects_have_their_resource_keys(served: Served, stripe_fixtures: dict) -> None:
    events = served.all("/v1/events")
    by_object = {
        "customer": "customer",
        "subscription": "subscription",
        "invoice": "invoice",
        "charge": "charge",
        "refund": "refund",
        "price": "price",
        "coupon": "coupon",
        "product": "product",
    }
    seen = set()
    for event in events:
        assert set(event) == set(stripe_fixtures["event"])
        obj = event["data"]["object"]
        seen.add(obj["object"])
        assert set(obj) == set(stripe_fixtures[by_object[obj["object"]]]), event["type"]
        assert set(event["data"]) <= {"object", "previous_attributes"}
        if event["type"].endswith(".updated"):
            assert event["data"]["previous_attributes"], event["id"]
    assert {"customer", "subscription", "invoice", "charge"} <= seen


def shape_differences(obj: dict, example: dict, path: str = "") -> list[str]:
    """Where `obj`'s keys differ from Stripe's example object's, nested objects included
    (where both hold an object: the example's `null`s say nothing about a shape)."""
    found = [f"{path}{key}: missing" for key in sorted(set(example) - set(obj))]
    found += [f"{path}{key}: not Stripe's" for key in sorted(set(obj) - set(example))]
    for key in sorted(set(obj) & set(example)):
        if isinstance(obj[key], dict) and isinstance(example[key], dict):
            found += shape_differences(obj[key], example[key], f"{path}{key}.")
    return found


def test_the_account_of_each_key_has_the_fixture_shape(stripe_fixtures: dict) -> None:
    """`GET /v1/account` answers the account the key belongs to: on a host serving two
    accounts, each key gets its own; a key nobody has gets Stripe's 401."""
    first = StripeSandbox(seed=1, customers=2, account_id="acct_1First000", api_key="sk_test_1")
    second = StripeSandbox(
        seed=2, customers=2, currencies=("eur",), account_id="acct_1Second00", api_key="sk_test_2"
    )
    with LoopbackServer(create_app([first, second])) as server, httpx.Client() as http:

        def get(key: str, params: dict | None = None, version: str = CURRENT) -> httpx.Response:
            return http.get(
                f"{server.base_url}/v1/account",
                params=params,
                headers={"Authorization": f"Bearer {key}", "Stripe-Version": version},
            )

        for sandbox in (first, second):
            for version in VERSIONS:
                response = get(sandbox.api_key, version=version)
                assert response.status_code == 200, response.text
                account = response.json()
                assert shape_differences(account, stripe_fixtures["account"]) == []
                assert account["id"] == sandbox.config.account_id
                assert account["object"] == "account"
                assert account["default_currency"] == sandbox.config.currencies[0]
                assert account["external_accounts"]["url"] == (
                    f"/v1/accounts/{sandbox.config.account_id}/external_accounts"
                )
                assert response.headers["Stripe-Version"] == version
        wrong = get("sk_test_nobodys_key_0000")
        assert wrong.status_code == 401
        assert wrong.json()["error"]["message"].startswith("Invalid API Key provided: sk_test_")
        unknown = get(first.api_key, {"account": second.config.account_id})
        assert unknown.status_code == 400
        assert unknown.json()["error"]["code"] == "parameter_unknown"
