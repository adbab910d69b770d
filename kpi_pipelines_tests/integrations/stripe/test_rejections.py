"""A Stripe record that fails validation is skipped, named (stream, id, reason) in the result's
errors, counted in records_rejected, and every other record is stored; the next sync reads it
again. The sandbox serves the record malformed, as an API regression would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kpi_pipelines.sandbox.stripe.scenarios import (
    CouponSpec,
    CustomerScript,
    ItemScript,
    PriceSpec,
    ScriptedSandbox,
    SubscriptionScript,
)
from kpi_pipelines_tests.integrations.stripe.landing import assert_same_landing, landing
from kpi_pipelines_tests.integrations.stripe.world import StripeWorld, serve_world, stored_series
from kpi_pipelines_tests.run_results import failure_message, metadata

NOT_AN_INTEGER = "Input should be a valid integer"  # strict: Stripe sends integers, never strings


def sync(world: StripeWorld, workspace_id: str) -> dict[str, Any]:
    result = world.sync(workspace_id)
    assert result.success, failure_message(result)  # the run stores what it can
    return metadata(result)


def without(raw: dict, *keys: tuple[str, str]) -> dict:
    return {k: v for k, v in raw.items() if k not in keys}


def test_a_malformed_object_in_a_list_is_named_and_the_rest_stored(young_stripe_world) -> None:
    world = young_stripe_world
    for ws in ("calm", "acme"):
        world.workspace(ws)
    world.import_rates("USD")
    assert sync(world, "calm")["success"]
    calm = landing(world.warehouse, "calm")
    charge_id = sorted(i for s, i in calm.raw if s == "charges")[7]
    world.sandbox.faults.malform(charge_id, {"amount": "12,00 EUR"})
    md = sync(world, "acme")
    assert md["success"] is False
    assert md["records_rejected"] == 1
    assert md["errors"] == [f"charges {charge_id}: amount: {NOT_AN_INTEGER}"]
    assert landing(world.warehouse, "acme").raw == without(calm.raw, ("charges", charge_id))
    # Fixed on Stripe's side: the next sync reads it again, though no event names it.
    world.sandbox.faults.clear()
    md = sync(world, "acme")
    assert md["success"] and md["records_rejected"] == 0
    assert_same_landing(world.warehouse, "acme", "calm")


def test_malformed_objects_and_events_on_the_incremental_path(young_stripe_world) -> None:
    world = young_stripe_world
    for ws in ("acme", "calm"):
        world.workspace(ws)
    world.import_rates("USD")
    sync(world, "acme")
    sync(world, "calm")  # the same syncs without faults (some changes send no event)
    since = world.sandbox.now_ts
    world.sandbox.advance(timedelta(days=6))
    events = world.sandbox.events_since(since + 1)
    sub_id = next(
        e["data"]["object"]["id"] for e in events if e["type"] == "customer.subscription.updated"
    )
    # an event whose object another event names too: rejecting it loses nothing else
    paid = next(e for e in events if e["type"] == "invoice.paid")
    world.sandbox.faults.malform(sub_id, drop=["items"])
    world.sandbox.faults.malform(paid["id"], drop=["type"])
    md = sync(world, "acme")
    # the subscription's events carry the malformed object too: each is named
    sub_events = [
        e["id"]
        for e in events
        if e["type"].startswith("customer.subscription.") and e["data"]["object"]["id"] == sub_id
    ]
    assert sub_events
    assert md["records_rejected"] == 2 + len(sub_events)
    assert sorted(md["errors"]) == sorted(
        [
            f"subscriptions {sub_id}: items: Field required",
            f"events {paid['id']}: type: Field required",
            *(f"subscription_events {e}: data.object.items: Field required" for e in sub_events),
        ]
    )
    stored = landing(world.warehouse, "acme").raw
    world.sandbox.faults.clear()
    sync(world, "calm")
    calm = landing(world.warehouse, "calm").raw
    key = ("subscriptions", sub_id)
    assert stored[key] != calm[key]  # the copy landed before stays until a valid one comes
    assert without(stored, key) == without(calm, key)
    md = sync(world, "acme")
    assert md["success"] and md["records_processed"] >= 1
    assert_same_landing(world.warehouse, "acme", "calm")


def test_a_malformed_invoice_line_rejects_its_invoice_only(warehouse, monkeypatch) -> None:
    """An invoice with more lines than its embedded first page: the rest come from
    /v1/invoices/:id/lines, where one line is malformed."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    many_items = SubscriptionScript(
        items=tuple(ItemScript(PriceSpec(1_000 + 100 * i)) for i in range(12))
    )
    sandbox = ScriptedSandbox(
        [
            CustomerScript(subscriptions=(many_items,)),
            CustomerScript(subscriptions=(SubscriptionScript(price=PriceSpec(5_000)),), created=1),
        ],
        start=start,
        now=start + timedelta(days=70),
    )
    with serve_world(sandbox, warehouse, monkeypatch) as world:
        for ws in ("calm", "acme"):
            world.workspace(ws)
        world.import_rates("USD")
        sync(world, "calm")
        calm = landing(world.warehouse, "calm")
        long = [
            p for (s, _), p in calm.raw.items() if s == "invoices" and len(p["lines"]["data"]) > 10
        ]
        assert len(long) >= 2
        invoice = long[0]
        line_id = invoice["lines"]["data"][11]["id"]  # on the second page of lines
        world.sandbox.faults.malform(line_id, {"amount": "lots"})
        md = sync(world, "acme")
        assert md["records_rejected"] == 1
        assert md["errors"] == [f"invoices {invoice['id']}: lines.data.11.amount: {NOT_AN_INTEGER}"]
        assert landing(world.warehouse, "acme").raw == without(
            calm.raw, ("invoices", invoice["id"])
        )


PACKAGES = PriceSpec(3_000, transform_quantity=(10, "up"), product="seats")
SEATS_HALF = CouponSpec(percent_off=50, applies_to=("seats",), id="SEATS_HALF")
PATTERN_CURRENCY = "String should match pattern '^[a-z]{3}$'"


@pytest.mark.parametrize(
    ("target", "patch", "reason"),
    [
        (
            "price",
            {"transform_quantity": {"divide_by": 0, "round": "up"}},
            "transform_quantity.divide_by: Input should be greater than or equal to 1",
        ),
        (
            "price",
            {"transform_quantity": {"divide_by": 10, "round": "nearest"}},
            "transform_quantity.round: Input should be 'up' or 'down'",
        ),
        ("price", {"currency": "USD"}, f"currency: {PATTERN_CURRENCY}"),
        (
            "price",
            {"unit_amount": -3_000},
            "unit_amount: Input should be greater than or equal to 0",
        ),
        ("price", {"unit_amount": 30.5}, "unit_amount: Input should be a valid integer"),
        (
            "price",
            {"unit_amount_decimal": "30,00"},
            "unit_amount_decimal: String should match pattern",
        ),
        (
            "price",
            {"currency_options": {"eur": {"unit_amount": "2800"}}},
            "currency_options.eur.unit_amount: Input should be a valid integer",
        ),
        (
            "price",
            {"currency_options": {"EUR": {"unit_amount": 2_800}}},
            f"currency_options.EUR.[key]: {PATTERN_CURRENCY}",
        ),
        ("coupon", {"percent_off": 150}, "percent_off: Input should be less than or equal to 100"),
        ("coupon", {"applies_to": {"products": "seats"}}, "applies_to.products: Input should be"),
        (
            "coupon",
            {"currency_options": {"usd": {"amount_off": -5}}},
            "currency_options.usd.amount_off: Input should be greater than or equal to 0",
        ),
    ],
)
def test_a_billing_field_outside_stripes_types_is_named_and_skipped(
    warehouse, monkeypatch, target: str, patch: dict, reason: str
) -> None:
    """Each field that changes what Stripe bills is validated as Stripe's reference types
    it (a three-letter lowercase currency, integers of the minor unit, decimal strings,
    non-negative amounts, a package size of at least one): a price or coupon outside it is
    named and skipped, and the other customer's MRR is stored."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    seats = SubscriptionScript(price=PACKAGES, quantity=25, coupon=SEATS_HALF)
    sandbox = ScriptedSandbox(
        [
            CustomerScript(subscriptions=(seats,)),
            CustomerScript(subscriptions=(SubscriptionScript(price=PriceSpec(5_000)),), created=1),
        ],
        start=start,
        now=start + timedelta(days=70),
    )
    item = sandbox.sim(0).subs[0].items[0]
    object_id = item.states[0][1].id if target == "price" else SEATS_HALF.id
    sandbox.faults.malform(object_id, patch)
    with serve_world(sandbox, warehouse, monkeypatch) as world:
        world.workspace("acme")
        world.import_rates("USD")
        md = sync(world, "acme")
        mrr = stored_series(world.warehouse, "acme")["mrr"]
    stream = "prices" if target == "price" else "coupons"
    assert md["success"] is False and md["records_rejected"] >= 1
    named = [e for e in md["errors"] if e.startswith(f"{stream} {object_id}: ")]
    assert len(named) == 1 and reason in named[0], md["errors"]
    if target == "price":
        # the subscription whose item embeds the price is named too, and left out
        assert any(
            e.startswith("subscriptions ") and f"items.data.0.price.{reason}" in e
            for e in md["errors"]
        ), md["errors"]
        assert mrr[(start + timedelta(days=60)).date()] == pytest.approx(50.0)
