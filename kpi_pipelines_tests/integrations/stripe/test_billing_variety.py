"""A year of a business that uses every billing setting Stripe offers (the sandbox's
`billing_variety`: incomplete starts, each dunning outcome, paused trials, every proration
behavior, item and stacked discounts, 100%-off coupons, tax-inclusive prices,
pause_collection, drafts, anchor resets, schedules) and every field that changes what Stripe
bills (package pricing, decimal amounts and tiers, prices and coupons billed in a currency
option, coupons limited to products, amounts off a tax-inclusive price, a coupon on one invoice), synced as in
production (a first sync a month in, then every two weeks, so no event is ever older than
Stripe keeps), and checked against the sandbox's truth on every day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from kpi_pipelines.sandbox.stripe import StripeSandbox
from kpi_pipelines_tests.integrations.stripe.scripted_world import days_match_truth
from kpi_pipelines_tests.integrations.stripe.world import serve_world, stored_series
from kpi_pipelines_tests.run_results import failure_message

START = datetime(2025, 1, 1, tzinfo=UTC)
# What the year has landed of each setting (each count must be > 0).
LANDED_SETTINGS = """
SELECT
  count(*) FILTER (WHERE stream = 'prices' AND payload->>'tax_behavior' = 'inclusive')
    AS inclusive_prices,
  count(*) FILTER (WHERE stream = 'subscription_events'
                   AND payload->'data'->'previous_attributes' ? 'pause_collection')
    AS pause_collection_changes,
  count(*) FILTER (WHERE stream = 'subscription_events'
                   AND payload->'data'->'object'->>'schedule' IS NOT NULL) AS scheduled,
  count(*) FILTER (WHERE stream = 'invoices' AND payload->>'status' = 'draft'
                   AND payload->>'auto_advance' = 'false') AS drafts_never_finalized,
  count(*) FILTER (WHERE stream = 'invoices' AND payload->>'status' = 'void') AS voided,
  count(*) FILTER (WHERE stream = 'subscriptions'
                   AND jsonb_array_length(payload->'discounts') > 1) AS stacked_discounts,
  count(*) FILTER (WHERE stream = 'subscriptions' AND EXISTS (
      SELECT FROM jsonb_array_elements(payload->'items'->'data') i
      WHERE jsonb_array_length(i->'discounts') > 0)) AS item_discounts,
  -- what a price bills: packages, fractions of a cent, another currency's amounts or tiers
  count(*) FILTER (WHERE stream = 'subscriptions' AND EXISTS (
      SELECT FROM jsonb_array_elements(payload->'items'->'data') i
      WHERE jsonb_typeof(i->'price'->'transform_quantity') = 'object')) AS packages,
  count(*) FILTER (WHERE stream = 'subscriptions' AND EXISTS (
      SELECT FROM jsonb_array_elements(payload->'items'->'data') i
      WHERE i->'price'->>'unit_amount_decimal' LIKE '%.%')) AS decimal_unit_amounts,
  count(*) FILTER (WHERE stream = 'prices' AND EXISTS (
      SELECT FROM jsonb_array_elements(CASE WHEN jsonb_typeof(payload->'tiers') = 'array'
                                            THEN payload->'tiers' ELSE '[]' END) t
      WHERE t->>'unit_amount_decimal' LIKE '%.%')) AS decimal_tiers,
  count(*) FILTER (WHERE stream = 'subscriptions' AND EXISTS (
      SELECT FROM jsonb_array_elements(payload->'items'->'data') i
      WHERE i->'price'->>'currency' <> payload->>'currency')) AS billed_in_an_option,
  count(*) FILTER (WHERE stream = 'prices' AND payload->>'billing_scheme' = 'tiered'
                   AND (SELECT count(*) FROM jsonb_each(payload->'currency_options') o
                        WHERE jsonb_typeof(o.value->'tiers') = 'array') > 1) AS option_tiers,
  -- coupons limited to products, or in another currency, that a subscription has
  count(*) FILTER (WHERE stream = 'subscriptions' AND EXISTS (
      SELECT FROM jsonb_array_elements(r.payload->'discounts') d
      JOIN raw_records c ON c.stream = 'coupons' AND c.record_id = d->'source'->>'coupon'
      WHERE jsonb_array_length(c.payload->'applies_to'->'products') > 0)) AS product_coupons,
  count(*) FILTER (WHERE stream = 'subscriptions' AND EXISTS (
      SELECT FROM jsonb_array_elements(r.payload->'discounts') d
      JOIN raw_records c ON c.stream = 'coupons' AND c.record_id = d->'source'->>'coupon'
      WHERE c.payload->>'currency' <> r.payload->>'currency')) AS coupon_options,
  count(*) FILTER (WHERE stream = 'invoices' AND EXISTS (
      SELECT FROM jsonb_array_elements(r.payload->'discounts') d
      WHERE d->>'invoice' IS NOT NULL)) AS one_invoice_discounts
FROM raw_records r WHERE source = 'stripe'
"""


def test_a_varied_year_synced_every_two_weeks_matches_the_truth_every_day(
    warehouse, monkeypatch
) -> None:
    sandbox = StripeSandbox(
        seed=5, customers=120, billing_variety=True, start=START, now=START + timedelta(days=30)
    )
    with serve_world(sandbox, warehouse, monkeypatch) as world:
        world.workspace("acme")
        world.import_rates("USD")
        end = START + timedelta(days=365)
        while True:
            result = world.sync("acme")
            assert result.success, failure_message(result)
            if sandbox.now >= end:
                break
            sandbox.advance(min(timedelta(days=14), end - sandbox.now))
        stored = stored_series(world.warehouse, "acme")
        statuses: set[str] = set()
        for ci in range(sandbox.generator.customer_count(sandbox.now_ts)):
            for sub in sandbox.sim(ci).subs:
                statuses |= {status for _, status in sub.status_log}
        assert {"incomplete_expired", "unpaid", "paused", "past_due"} <= statuses
        with world.warehouse.tenant("acme", actor="test") as db:
            landed = db.execute(sa.text(LANDED_SETTINGS)).one()._asdict()
        assert all(landed.values()), landed
        days_match_truth(
            sandbox, stored, START.date(), end.date() - timedelta(days=2), tolerance=1e-4
        )
