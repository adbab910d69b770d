"""No event is skipped for good: Stripe's events list is eventually consistent.

The incremental sync reads `/v1/events` from a little before the newest event it has read,
skipping the events it already applied. Each case is produced by the sandbox from its own
state (see kpi_pipelines/sandbox/stripe/visibility.py), and ends with the workspace's
raw_records and kpi_data equal, row for row, to those of a workspace synced once, calmly, from
the same sandbox.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from kpi_pipelines.sandbox.stripe import StripeSandbox
from kpi_pipelines.sandbox.stripe.api import Api
from kpi_pipelines_tests.integrations.stripe.landing import assert_same_landing, written_rows
from kpi_pipelines_tests.integrations.stripe.world import StripeWorld
from kpi_pipelines_tests.run_results import failure_message, metadata

CATALOG_TYPES = ("product.created", "price.created", "coupon.created", "coupon.deleted")


EVENT_TRIAL_ENDS = "customer.subscription.trial_will_end"  # says nothing changed: not landed


def future_events(sandbox: StripeSandbox, days: int) -> list[dict[str, Any]]:
    """The events of the next `days`, oldest first, from a twin sandbox (same config, later
    clock): the simulation is causal, so these are the events `sandbox` will create."""
    twin = StripeSandbox(sandbox.config)
    twin.advance(timedelta(days=days))
    return twin.events_since(sandbox.now_ts + 1)


def listed_event_ids(sandbox: StripeSandbox, **created: int) -> set[str]:
    """The ids `/v1/events` lists right now (what the sandbox serves, asked directly)."""
    query = [(f"created[{op}]", str(t)) for op, t in created.items()] + [("limit", "100")]
    status, body = Api(sandbox).handle("GET", "/v1/events", query, None)
    assert status == 200 and not body["has_more"]
    return {e["id"] for e in body["data"]}


def synced(world: StripeWorld, workspace_id: str, **options: Any) -> dict[str, Any]:
    result = world.sync(workspace_id, **options)
    assert result.success, failure_message(result)
    return metadata(result)


def nothing_applied_twice(world: StripeWorld, workspace_id: str) -> None:
    """Syncing again reads the overlap again and applies none of it: not a row is written."""
    before = written_rows(world.warehouse, workspace_id)
    assert synced(world, workspace_id)["records_processed"] == 0
    assert written_rows(world.warehouse, workspace_id) == before


def test_events_of_the_second_already_read_are_not_skipped(stripe_world) -> None:
    """The sync reads the list in the middle of a second; more events of that second appear
    afterwards, with the `created` of the newest event already read."""
    world = stripe_world
    for ws in ("inc", "calm"):
        world.workspace(ws)
    world.import_rates("USD")
    synced(world, "inc")
    events = future_events(world.sandbox, 10)
    by_second: dict[int, list[dict[str, Any]]] = {}
    for event in events:
        by_second.setdefault(event["created"], []).append(event)

    def late_news(second: list[dict[str, Any]]) -> bool:
        # half of the second's events have happened when the clock stops in its middle; one
        # still to come must be about an object created in that second and not otherwise
        # touched then (else reading that object would show its change anyway)
        if len(second) < 2 or any(e["type"] in CATALOG_TYPES for e in second):
            return False
        early = second[: math.ceil(len(second) / 2)]
        touched = {e["data"]["object"]["id"] for e in early}
        return any(
            e["data"]["object"]["id"] not in touched and e["data"]["object"]["created"] == t
            for e in second[len(early) :]
            for t in [e["created"]]
        )

    t = next(t for t, second in sorted(by_second.items()) if late_news(second))
    world.sandbox.advance(t, into_second=0.5)
    in_second = {e["id"] for e in by_second[t]}
    shown = listed_event_ids(world.sandbox, gte=t) & in_second
    assert 0 < len(shown) < len(in_second)  # the sandbox shows only the second's first events
    assert synced(world, "inc")["records_processed"] > 0
    world.sandbox.advance(t + 60)
    assert listed_event_ids(world.sandbox, gte=t) >= in_second
    synced(world, "inc")
    synced(world, "calm")
    assert_same_landing(world.warehouse, "inc", "calm")
    nothing_applied_twice(world, "inc")


def test_an_event_that_becomes_visible_late_is_not_skipped(stripe_world) -> None:
    """A charge's event appears two minutes after its `created`, after events newer than it
    were read: the sync after it appears still applies it."""
    world = stripe_world
    for ws in ("inc", "calm"):
        world.workspace(ws)
    world.import_rates("USD")
    synced(world, "inc")
    events = future_events(world.sandbox, 10)
    touched = Counter(e["data"]["object"]["id"] for e in events)

    def overtaken(i: int) -> bool:
        # a charge's only event, followed within a minute by an event of another type
        event = events[i]
        return (
            event["type"] == "charge.succeeded"
            and touched[event["data"]["object"]["id"]] == 1
            and any(
                e["type"] != "charge.succeeded"
                and event["created"] <= e["created"] <= event["created"] + 60
                for e in events[i + 1 :]
            )
        )

    late = events[next(i for i in range(len(events)) if overtaken(i))]
    t = late["created"]
    world.sandbox.delay_events(120, types=["charge.succeeded"], created_from=world.sandbox.now_ts)
    world.sandbox.advance(t + 60)
    shown = listed_event_ids(world.sandbox, gte=t)
    assert late["id"] not in shown and shown  # newer events are listed, the charge's is not
    synced(world, "inc")
    world.sandbox.advance(t + 200)
    assert late["id"] in listed_event_ids(world.sandbox, gte=t)
    synced(world, "inc")
    synced(world, "calm")
    assert_same_landing(world.warehouse, "inc", "calm")
    nothing_applied_twice(world, "inc")


def test_the_cursor_remembers_only_the_overlap(young_stripe_world) -> None:
    world = young_stripe_world
    world.workspace("inc")
    world.import_rates("USD")
    synced(world, "inc", event_overlap_seconds=3600)
    world.sandbox.advance(timedelta(days=3))
    synced(world, "inc", event_overlap_seconds=3600)
    cursor = world_cursor(world, "inc")
    newest = cursor["last_event_created"]
    recent = [
        e["id"] for e in world.sandbox.events_since(newest - 3600) if e["created"] >= newest - 3600
    ]
    assert recent and set(cursor["seen_event_ids"]) == set(recent)


def world_cursor(world: StripeWorld, workspace_id: str) -> dict[str, Any]:
    import sqlalchemy as sa

    with world.warehouse.tenant(workspace_id, actor="test") as db:
        return db.execute(
            sa.text("SELECT cursor FROM sync_state WHERE source = 'stripe' AND stream = 'events'")
        ).scalar()


def test_a_workspace_landed_before_subscription_events_reads_their_30_days_once(
    stripe_world,
) -> None:
    """A workspace synced by a version that landed no subscription events (nor snapshots)
    lands Stripe's 30 days of them on its next incremental sync, and then computes what a
    workspace synced from scratch computes."""
    world = stripe_world
    for ws in ("old", "calm"):
        world.workspace(ws)
    world.import_rates("USD")
    synced(world, "old")
    # what the older version left: as the database's superuser (a tenant session may not)
    with world.warehouse.engine(None).begin() as db:
        db.execute(
            sa.text(
                "DELETE FROM kpi.raw_records WHERE workspace_id = 'old'"
                " AND stream IN ('subscription_events', 'subscription_states')"
            )
        )
        db.execute(
            sa.text(
                "UPDATE kpi.sync_state SET cursor = cursor - 'subscription_events_landed'"
                " WHERE workspace_id = 'old' AND source = 'stripe'"
            )
        )
    world.sandbox.advance(timedelta(days=2))
    synced(world, "old")
    synced(world, "calm")
    assert_same_landing(world.warehouse, "old", "calm")
    with world.warehouse.tenant("old", actor="test") as db:
        landed = db.execute(
            sa.text("SELECT count(*) FROM raw_records WHERE stream = 'subscription_events'")
        ).scalar()
        assert db.execute(
            sa.text("SELECT cursor->'subscription_events_landed' FROM sync_state")
        ).scalar()
    listed = [
        e
        for e in world.sandbox.events_since(world.sandbox.now_ts - 30 * 86_400)
        if e["type"].startswith("customer.subscription.") and e["type"] != EVENT_TRIAL_ENDS
    ]
    assert landed == len(listed) > 0
    nothing_applied_twice(world, "old")
