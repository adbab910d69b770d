"""A hostile Stripe, through the real adapter and the official SDK's requestor: what it sends
costs what the kit's limits allow (bounds.py), and nothing it echoes is stored.

A body over the limit (a gzip bomb) fails the sync having read about the limit; a list that
goes round in circles fails the stream after one lap; a record with a field over the limit,
or holding the connection's own key, is rejected by name and the rest is stored. The secret
canary (run after every test) scans the warehouse and the run's event log for the key."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import httpx
import pytest

from kpi_pipelines_tests.integrations.stripe.landing import landing
from kpi_pipelines_tests.integrations.stripe.world import StripeWorld
from kpi_pipelines_tests.run_results import failure_message, metadata

MiB = 1024 * 1024


@pytest.fixture
def world(young_stripe_world: StripeWorld) -> Iterator[StripeWorld]:
    for workspace_id in ("calm", "acme"):
        young_stripe_world.workspace(workspace_id)
    young_stripe_world.import_rates("USD")
    yield young_stripe_world


def customer_ids(world: StripeWorld, page_size: int) -> list[list[str]]:
    """The ids of the customers list, page by page, as Stripe's sandbox serves them."""
    pages: list[list[str]] = []
    after: dict[str, str] = {}
    while True:
        body = httpx.get(
            world.server.url("/v1/customers"),
            params={"limit": page_size, **after},
            headers={"Authorization": f"Bearer {world.sandbox.api_key}"},
        ).json()
        pages.append([obj["id"] for obj in body["data"]])
        if not body["has_more"]:
            return pages
        after = {"starting_after": pages[-1][-1]}


def test_a_gzip_bomb_fails_the_sync_having_read_about_the_limit(
    world: StripeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KPI_HTTP_MAX_BODY_BYTES", str(MiB))
    world.sandbox.faults.bomb(1, 256 * MiB, after=3)
    tracemalloc.start()
    try:
        result = world.sync("acme")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert not result.success
    message = failure_message(result)
    assert message.startswith("stripe sent a response we refuse to read: GET /v1/"), message
    assert "sent a body of more than 1,048,576 bytes once decompressed" in message, message
    assert "not retried" in message
    assert world.sandbox.faults.injected == 1
    # The SDK's own client would inflate all 256 MiB (and join it: twice that); ours stops
    # at the limit. What remains is the Dagster run's own memory.
    assert peak < 32 * MiB, peak


def test_a_list_that_goes_round_in_circles_fails_after_one_lap(world: StripeWorld) -> None:
    _, second, *_ = customer_ids(world, page_size=10)
    # The page after the second one is the first again: A -> B -> A -> B ...
    world.sandbox.faults.rewind(second[-1], None, times=25)
    result = world.sync("acme", page_size=10)
    assert not result.success
    message = failure_message(result)
    assert message.startswith(
        "stripe is unavailable: last error /v1/customers served page 3 the same as page 1"
    ), message
    assert "goes round in circles" in message and "retried later" in message
    assert world.sandbox.faults.injected == 1  # one lap, not 25


def test_a_record_with_a_field_over_the_limit_is_rejected_by_name_and_the_rest_stored(
    world: StripeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert world.sync("calm").success
    calm = landing(world.warehouse, "calm").raw
    customer = sorted(i for s, i in calm if s == "customers")[3]
    monkeypatch.setenv("KPI_RECORD_MAX_STRING_CHARS", "10000")
    world.sandbox.faults.malform(customer, {"name": "A" * 10_001})
    md = metadata(world.sync("acme"))
    assert md["records_rejected"] == 1
    assert md["errors"] == [
        f"customers {customer}: a string of 10,001 characters, over the limit of 10,000"
        " (KPI_RECORD_MAX_STRING_CHARS); not stored"
    ]
    landed = landing(world.warehouse, "acme").raw
    assert ("customers", customer) not in landed
    assert landed == {key: value for key, value in calm.items() if key != ("customers", customer)}


def test_a_secret_echoed_back_in_a_record_is_never_landed(world: StripeWorld) -> None:
    """Stripe echoes the connection's key into a customer's description, and makes it the
    id of another: both are rejected, neither the rejection nor the cursor shows the key,
    and the canary finds it nowhere (warehouse, event log, compute logs)."""
    assert world.sync("calm").success
    calm = landing(world.warehouse, "calm").raw
    described, renamed = sorted(i for s, i in calm if s == "customers")[2:4]
    key = world.sandbox.api_key
    world.sandbox.faults.malform(described, {"description": f"requested with {key}"})
    world.sandbox.faults.malform(renamed, {"id": key})
    md = metadata(world.sync("acme"))
    assert md["records_rejected"] == 2
    echoed = (
        "it holds a secret this deployment uses (a key or token sent to the provider, echoed"
        " back); refused, not stored"
    )
    assert sorted(md["errors"]) == sorted(
        [f"customers {described}: {echoed}", f"customers ?: {echoed}"]
    )
    landed = landing(world.warehouse, "acme").raw
    assert set(calm) - set(landed) == {("customers", described), ("customers", renamed)}
    assert not any(key in repr(payload) for payload in landed.values())
