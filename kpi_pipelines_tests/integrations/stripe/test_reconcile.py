"""The daily reconciliation really reconciles: with `reconcile: true` (what the daily schedule
sets) every stream is listed again and compared with the landed copies; what is missing or
differs is landed (healed), the run's metadata says how much per stream, and landed objects
that are no longer listed (deleted in Stripe) are counted, never deleted."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import sqlalchemy as sa

from kpi_pipelines.definitions import defs
from kpi_pipelines.resources import WarehouseResource
from kpi_pipelines_tests.integrations.stripe.landing import (
    assert_same_landing,
    landing,
    written_rows,
)
from kpi_pipelines_tests.integrations.stripe.world import StripeWorld
from kpi_pipelines_tests.run_results import failure_message, metadata

RECONCILE = {"reconcile": True}


def synced(world: StripeWorld, workspace_id: str, **options: Any) -> dict[str, Any]:
    result = world.sync(workspace_id, **options)
    assert result.success, failure_message(result)
    return metadata(result)


def cursor_mode(world: StripeWorld, workspace_id: str) -> str:
    with world.warehouse.tenant(workspace_id, actor="test") as db:
        return db.execute(
            sa.text("SELECT cursor->>'mode' FROM sync_state WHERE source = 'stripe'")
        ).scalar()


def landed_event_ids(world: StripeWorld, workspace_id: str) -> set[str]:
    with world.warehouse.tenant(workspace_id, actor="test") as db:
        return set(
            db.execute(
                sa.text("SELECT record_id FROM raw_records WHERE stream = 'subscription_events'")
            ).scalars()
        )


def test_a_reconcile_heals_what_missed_events_hid_and_says_how_much(young_stripe_world) -> None:
    world = young_stripe_world
    for ws in ("acme", "calm"):
        world.workspace(ws)
    world.import_rates("USD")
    synced(world, "acme")
    # Subscription changes reach the events list eight days late from now on: the incremental
    # sync on day 20 runs past those of days 12 to 20, and no later one reads them again.
    world.sandbox.delay_events(
        8 * 86_400,
        types=["customer.subscription.updated", "customer.subscription.deleted"],
        created_from=world.sandbox.now_ts,
    )
    world.sandbox.advance(timedelta(days=20))
    synced(world, "acme")
    assert cursor_mode(world, "acme") == "incremental"
    world.sandbox.clear_event_delays()  # they are listed now, before the cursor
    synced(world, "calm")  # a first sync at the same clock, for reference
    stale, calm = landing(world.warehouse, "acme"), landing(world.warehouse, "calm")
    differing = Counter(
        stream
        for (stream, record_id), payload in calm.raw.items()
        if stale.raw.get((stream, record_id)) != payload
    )
    assert differing["subscriptions"] > 0, "the missed events should have hidden something"
    assert stale.kpi != calm.kpi
    missed = landed_event_ids(world, "calm") - landed_event_ids(world, "acme")
    assert missed
    md = synced(world, "acme", options=RECONCILE)
    # every object as Stripe lists it, every event of the last 30 days, and so the same
    # metrics as a workspace that never missed anything
    assert_same_landing(world.warehouse, "acme", "calm")
    assert landed_event_ids(world, "acme") >= landed_event_ids(world, "calm")
    assert cursor_mode(world, "acme") == "reconcile"
    per_stream = md["reconcile"]
    healed = {s: c["healed"] for s, c in per_stream.items() if c["healed"]}
    assert healed == {**differing, "subscription_events": len(missed)}
    assert md["reconcile_healed"] == sum(differing.values()) + len(missed)
    assert md["reconcile_no_longer_listed"] == 0
    assert per_stream["subscriptions"]["listed"] == world.sandbox.counts()["subscriptions"]


def test_a_reconcile_of_an_unchanged_account_writes_nothing(young_stripe_world) -> None:
    world = young_stripe_world
    world.workspace("acme")
    world.import_rates("USD")

    def reconcile_writes_nothing() -> None:
        before = written_rows(world.warehouse, "acme")
        md = synced(world, "acme", options=RECONCILE)
        assert md["reconcile_healed"] == 0 and md["reconcile_no_longer_listed"] == 0
        assert all(c["healed"] == 0 for c in md["reconcile"].values())
        assert md["points_written"] == 0
        assert written_rows(world.warehouse, "acme") == before

    synced(world, "acme")
    reconcile_writes_nothing()
    world.sandbox.advance(timedelta(days=6))
    synced(world, "acme")  # incremental: objects landed from retrievals, not lists
    # What changed without an event (a coupon's times_redeemed, a repeating discount that
    # ended) is landed once; then the account is unchanged again.
    synced(world, "acme", options=RECONCILE)
    reconcile_writes_nothing()


def test_a_deleted_coupon_is_counted_and_its_history_kept(young_stripe_world) -> None:
    world = young_stripe_world
    world.workspace("acme")
    world.import_rates("USD")
    synced(world, "acme")
    before = landing(world.warehouse, "acme")
    used = Counter(
        discount["source"]["coupon"]
        for (stream, _), payload in before.raw.items()
        if stream == "subscriptions"
        for discount in payload["discounts"]
    )
    coupon_id = used.most_common(1)[0][0]
    world.sandbox.delete_coupon(coupon_id)
    synced(world, "acme")  # incremental: coupon.deleted names it, Stripe answers 404
    md = synced(world, "acme", options=RECONCILE)
    assert md["reconcile"]["coupons"] == {
        "listed": world.sandbox.counts()["coupons"],
        "healed": 0,
        "no_longer_listed": 1,
    }
    assert md["reconcile_no_longer_listed"] == 1
    after = landing(world.warehouse, "acme")
    assert after.raw[("coupons", coupon_id)] == before.raw[("coupons", coupon_id)]
    assert after.kpi == before.kpi  # the coupon still discounts the subscriptions using it


def test_the_daily_schedule_asks_for_a_reconcile_that_runs(young_stripe_world) -> None:
    world = young_stripe_world
    world.workspace("acme")
    world.import_rates("USD")
    synced(world, "acme")
    schedule = defs.resolve_schedule_def("stripe_schedule")
    with dg.build_schedule_context(
        instance=world.instance,
        scheduled_execution_time=datetime(2026, 6, 1, 3, tzinfo=UTC),
        resources={"warehouse": WarehouseResource()},
        repository_def=defs.get_repository_def(),
    ) as context:
        [request] = schedule.evaluate_tick(context).run_requests
    config = request.run_config["ops"]["stripe_kpis"]["config"]
    assert config == {"reconcile": True, "connection": "default"}
    result = world.sync("acme", options=config)
    assert result.success, failure_message(result)
    assert cursor_mode(world, "acme") == "reconcile"
    assert metadata(result)["reconcile_healed"] == 0


def test_a_reconcile_with_no_new_event_still_records_the_healed_state(young_stripe_world) -> None:
    """Events stop reaching the list: the newest visible one, which dates this sync's
    observations, is the same as at the last sync, and the reconcile's fresh copy of a
    changed subscription replaces that instant's snapshot rather than being dropped."""
    world = young_stripe_world
    world.workspace("acme")
    world.import_rates("USD")
    synced(world, "acme")
    world.sandbox.delay_events(None, created_from=world.sandbox.now_ts)
    world.sandbox.advance(timedelta(days=10))
    md = synced(world, "acme", options=RECONCILE)
    assert md["reconcile"]["subscriptions"]["healed"] > 0
    with world.warehouse.tenant("acme", actor="test") as db:
        stale = db.execute(sa.text(SNAPSHOTS_BEHIND_LANDED)).scalars().all()
    assert stale == []


# Landed subscriptions whose latest snapshot says another status or other items.
SNAPSHOTS_BEHIND_LANDED = """
SELECT s.record_id FROM raw_records s
JOIN LATERAL (
    SELECT payload->'subscription' AS state FROM raw_records
    WHERE stream = 'subscription_states' AND payload->'subscription'->>'id' = s.record_id
    ORDER BY (payload->>'observed_at')::bigint DESC LIMIT 1
) latest ON true
WHERE s.stream = 'subscriptions'
  AND (latest.state->>'status' IS DISTINCT FROM s.payload->>'status'
       OR jsonb_array_length(latest.state->'items')
          <> jsonb_array_length(s.payload->'items'->'data'))
"""
