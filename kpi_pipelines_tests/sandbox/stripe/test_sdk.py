"""The official stripe SDK (16.x) can page through every list the adapter needs."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import stripe

from kpi_pipelines.sandbox.stripe import StripeSandbox
from kpi_pipelines_tests.sandbox.stripe.conftest import Served, serve


@pytest.fixture(scope="module")
def small() -> Iterator[Served]:
    yield from serve(StripeSandbox(seed=21, customers=30))


def client_for(served: Served, key: str | None = None) -> stripe.StripeClient:
    return stripe.StripeClient(
        key or served.sandbox.api_key,
        base_addresses={"api": served.base_url},
        max_network_retries=0,
    )


LISTS = [
    ("customers", {}),
    ("subscriptions", {"status": "all", "expand": ["data.discounts"]}),
    ("invoices", {"expand": ["data.discounts"]}),
    ("charges", {}),
    ("refunds", {}),
    ("balance_transactions", {}),
    ("events", {}),
    ("prices", {"expand": ["data.tiers"]}),
    ("products", {}),
    ("coupons", {}),
]


@pytest.mark.parametrize(("resource", "params"), LISTS)
def test_sdk_auto_pages_every_list(small: Served, resource: str, params: dict) -> None:
    client = client_for(small)
    service = getattr(client.v1, resource)
    objects = [
        obj.to_dict() for obj in service.list(params={"limit": 7, **params}).auto_paging_iter()
    ]
    raw = small.all(f"/v1/{resource}", {"status": "all"} if resource == "subscriptions" else {})
    assert [o["id"] for o in objects] == [o["id"] for o in raw]
    assert len({o["id"] for o in objects}) == len(objects)
    if resource == "subscriptions":
        assert any(d["object"] == "discount" for o in objects for d in o["discounts"])
    if resource == "prices":
        assert any(o.get("tiers") for o in objects)


def test_sdk_nested_lists_and_retrieval(small: Served) -> None:
    client = client_for(small)
    sub = next(iter(client.v1.subscriptions.list(params={"status": "all", "limit": 1})))
    items = client.v1.subscription_items.list(params={"subscription": sub.id}).to_dict()
    assert items["data"][0]["subscription"] == sub.id
    invoice = next(iter(client.v1.invoices.list(params={"subscription": sub.id})))
    lines = [
        line.to_dict() for line in client.v1.invoices.line_items.list(invoice.id).auto_paging_iter()
    ]
    assert [line["id"] for line in lines] == [
        line["id"] for line in invoice.to_dict()["lines"]["data"]
    ]
    # The SDK turns *_decimal strings into Decimal: compare through JSON with str().
    retrieved = json.loads(
        json.dumps(client.v1.invoices.retrieve(invoice.id).to_dict(), default=str)
    )
    assert retrieved == small.ok(f"/v1/invoices/{invoice.id}")
    customer = client.v1.customers.retrieve(sub.customer)
    assert customer.id == sub.customer


def test_sdk_maps_errors(small: Served) -> None:
    client = client_for(small)
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.customers.retrieve("cus_missing")
    assert missing.value.http_status == 404
    assert missing.value.code == "resource_missing"
    with pytest.raises(stripe.AuthenticationError):
        client_for(small, "sk_test_not_the_key").v1.customers.list()
    small.sandbox.faults.storm(1)
    try:
        with pytest.raises(stripe.RateLimitError) as limited:
            client.v1.customers.list()
        assert limited.value.headers["Stripe-Should-Retry"] == "true"
    finally:
        small.sandbox.faults.clear()
    with pytest.raises(stripe.InvalidRequestError) as bad:
        client.v1.charges.list(params={"limit": 1000})
    assert bad.value.param == "limit"


def test_sdk_retries_a_storm(small: Served) -> None:
    client = stripe.StripeClient(
        small.sandbox.api_key, base_addresses={"api": small.base_url}, max_network_retries=3
    )
    small.sandbox.faults.storm(2, status=503)
    try:
        assert client.v1.customers.list(params={"limit": 2}).data
    finally:
        small.sandbox.faults.clear()


def test_sdk_retrieves_the_keys_own_account(small: Served) -> None:
    account = client_for(small).v1.accounts.retrieve_current()
    assert isinstance(account, stripe.Account)
    assert account.id == small.sandbox.config.account_id
    assert account.settings.dashboard.timezone == "Etc/UTC"
    with pytest.raises(stripe.AuthenticationError):
        client_for(small, "sk_test_not_a_key_of_this_host").v1.accounts.retrieve_current()
