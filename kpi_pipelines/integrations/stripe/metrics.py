"""Every Stripe metric of kpi-definitions.md, computed in SQL over the landed raw records.

Nothing here calls Stripe: a fix to a formula is recomputed from raw_records alone. What
each subscription was at each instant comes, in order of authority, from:
1. the subscriptions as landed, kept as a snapshot per sync whenever their state changed
   (`subscription_states`): true from the sync on;
2. the subscription events of the last 30 days (`subscription_events`): each one's object is
   the state after the change, and its previous_attributes the state before, dated by the
   event; a state no event explains has held since before the events start;
3. before that, invoice lines (every billing period has a line per item; a mid-period change
   adds proration lines from the change on) and the subscription's own dates.
Only `active` and `past_due` count (every other status is worth nothing while it lasts);
an item is worth what its price bills in the subscription's currency (its currency option,
packages of transform_quantity, tiers, decimal amounts rounded per line); forever coupons of
its items and of the subscription apply (limited to their products, an amount off in the
subscription's currency); the tax a price includes does not count. README's Stripe table
lists every billing field and what it does. That turns into each customer's MRR as levels between the reporting days on which
it changes. Daily totals, movements, counts and the 30-day cohort ratios come from those
levels without ever building a row per customer per day (the work grows with the changes,
not with customers x days).

The work stays linear in the account's size: each landed payload (compressed jsonb, which
every `payload->...` decompresses again) is read through `jsonb_to_record` for the fields a
step needs, once per step; what two steps need or a join compares goes to a temporary table
that is analyzed as soon as it is made (records landed a moment ago have no statistics, and
a join planned for one row per side becomes a nested loop over every pair).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy.engine import Connection

from kpi_pipelines.integrations.shared.money import MissingFxRate
from kpi_pipelines.models import KPIData, day_timestamp

SOURCE = "stripe"

# ISO 4217 currencies whose minor unit is not 1/100 (Stripe's list).
ZERO_DECIMAL = (
    "BIF",
    "CLP",
    "DJF",
    "GNF",
    "JPY",
    "KMF",
    "KRW",
    "MGA",
    "PYG",
    "RWF",
    "UGX",
    "VND",
    "VUV",
    "XAF",
    "XOF",
    "XPF",
)
THREE_DECIMAL = ("BHD", "JOD", "KWD", "OMR", "TND")

MRR_METRICS = (
    "mrr",
    "new_mrr",
    "expansion_mrr",
    "contraction_mrr",
    "churned_mrr",
    "reactivation_mrr",
    "fx_adjustment_mrr",
)
MONEY_METRICS = (*MRR_METRICS, "arpa", "revenue", "refunds", "net_revenue")
# Every metric this module computes (catalog keys, kpi-definitions.md).
METRICS = (
    *MRR_METRICS,
    "active_customers",
    "new_customers",
    "churned_customers",
    "customer_churn_rate",
    "revenue_churn_rate",
    "net_revenue_retention",
    "arpa",
    "revenue",
    "refunds",
    "net_revenue",
)


# Step 1: each price in each currency it bills: its own, and each of its currency options (a
# subscription in that currency bills the option's unit amount or tiers); with its billing
# scheme, package size (transform_quantity), tax behavior, product and months per period.
_PRICES = """
CREATE TEMP TABLE st_prices ON COMMIT DROP AS
WITH landed AS (
    SELECT payload->>'id' AS id, payload AS p, 0 AS rank FROM raw_records
    WHERE source = 'stripe' AND stream = 'prices'
    UNION ALL
    SELECT i->'price'->>'id', i->'price', 1 FROM raw_records r,
        jsonb_array_elements(CASE WHEN jsonb_typeof(r.payload->'items'->'data') = 'array' THEN r.payload->'items'->'data' ELSE '[]' END) i
    WHERE r.source = 'stripe' AND r.stream = 'subscriptions' AND jsonb_typeof(i->'price') = 'object'
), chosen AS (
    SELECT DISTINCT ON (id) id, p FROM landed ORDER BY id, rank
), per_currency AS (
    SELECT id, p, p->>'currency' AS currency, p AS amounts FROM chosen
    UNION ALL
    SELECT c.id, c.p, o.key, o.value
    FROM chosen c,
         jsonb_each(CASE WHEN jsonb_typeof(c.p->'currency_options') = 'object' THEN c.p->'currency_options' ELSE '{}' END) o
    WHERE o.key <> c.p->>'currency' AND jsonb_typeof(o.value) = 'object'
)
SELECT id, upper(currency) AS currency,
       coalesce((amounts->>'unit_amount_decimal')::numeric, (amounts->>'unit_amount')::numeric) AS unit_amount,
       coalesce(p->>'billing_scheme', 'per_unit') AS billing_scheme,
       coalesce(amounts->>'tax_behavior', p->>'tax_behavior') AS tax_behavior,
       p->>'tiers_mode' AS tiers_mode, amounts->'tiers' AS tiers,
       (p->'transform_quantity'->>'divide_by')::numeric AS divide_by,
       p->'transform_quantity'->>'round' AS round_to,
       coalesce(p->'product'->>'id', p->>'product') AS product,
       coalesce(p->'recurring'->>'usage_type', 'licensed') AS usage_type,
       CASE p->'recurring'->>'interval'
            WHEN 'month' THEN 1.0 WHEN 'year' THEN 1.0 / 12 WHEN 'week' THEN 52.0 / 12
            WHEN 'day' THEN 365.0 / 12 END
         / nullif((p->'recurring'->>'interval_count')::numeric, 0) AS monthly_factor
FROM per_currency
"""

# Step 2: invoice lines of subscription items (with the inclusive tax in their amounts), and
# the subscriptions as landed.
_LINES = """
CREATE TEMP TABLE st_lines ON COMMIT DROP AS
SELECT coalesce(l->'parent'->'subscription_item_details'->>'subscription',
                inv.parent->'subscription_details'->>'subscription',
                inv.subscription #>> '{}') AS sub_id,
       coalesce(l->'parent'->'subscription_item_details'->>'subscription_item',
                l->>'subscription_item') AS item_id,
       coalesce(l->'pricing'->'price_details'->>'price', l->'price'->>'id') AS price_id,
       coalesce((l->>'quantity')::numeric, 1) AS quantity,
       to_timestamp((l->'period'->>'start')::bigint) AS p_start,
       to_timestamp((l->'period'->>'end')::bigint) AS p_end,
       (l->>'amount')::bigint AS amount,
       -- the share of a tax-inclusive amount that is tax (of what it was levied on, so a
       -- discount on the line does not change it)
       (SELECT sum((t->>'amount')::float8)
               / nullif(sum((t->>'amount')::float8 + (t->>'taxable_amount')::float8), 0)
        FROM jsonb_array_elements(CASE WHEN jsonb_typeof(l->'taxes') = 'array' THEN l->'taxes' ELSE '[]' END) t
        WHERE t->>'tax_behavior' = 'inclusive' AND jsonb_typeof(t->'amount') = 'number'
          AND jsonb_typeof(t->'taxable_amount') = 'number') AS inclusive_tax_share,
       (inv.created #>> '{}')::bigint AS invoice_created
FROM raw_records r,
     jsonb_to_record(r.payload) AS inv(lines jsonb, parent jsonb, subscription jsonb, created jsonb),
     jsonb_array_elements(CASE WHEN jsonb_typeof(inv.lines->'data') = 'array' THEN inv.lines->'data' ELSE '[]' END) l
WHERE r.source = 'stripe' AND r.stream = 'invoices'
  AND coalesce(l->'parent'->'subscription_item_details'->>'subscription_item', l->>'subscription_item') IS NOT NULL;

CREATE TEMP TABLE st_subs ON COMMIT DROP AS
SELECT s.id #>> '{}' AS sub_id,
       coalesce(s.customer->>'id', s.customer #>> '{}') AS customer,
       upper(s.currency #>> '{}') AS currency,
       s.status #>> '{}' AS status,
       to_timestamp((s.start_date #>> '{}')::bigint) AS started,
       to_timestamp((s.trial_start #>> '{}')::bigint) AS trial_start,
       to_timestamp((s.trial_end #>> '{}')::bigint) AS trial_end,
       to_timestamp((s.ended_at #>> '{}')::bigint) AS ended_at
FROM raw_records r,
     jsonb_to_record(r.payload) AS s(id jsonb, customer jsonb, currency jsonb, status jsonb,
                                     start_date jsonb, trial_start jsonb, trial_end jsonb,
                                     ended_at jsonb)
WHERE r.source = 'stripe' AND r.stream = 'subscriptions'
"""


def _array(expr: str) -> str:
    """A jsonb value as an array to iterate (an absent or malformed one is empty)."""
    return f"CASE WHEN jsonb_typeof({expr}) = 'array' THEN {expr} ELSE '[]' END"


def _ids(expr: str) -> str:
    """The ids of a list of objects or ids (discounts are either, by expansion), in their
    order (discounts apply one after the other)."""
    return (
        "coalesce((SELECT jsonb_agg(coalesce(d->'id', d) ORDER BY n)"
        f" FROM jsonb_array_elements({_array(expr)}) WITH ORDINALITY AS ds(d, n)"
        " WHERE jsonb_typeof(d) = 'string' OR jsonb_typeof(d->'id') = 'string'), '[]')"
    )


def _included_tax(rates: str) -> str:
    """The percentage of the inclusive tax rates of a list of tax rates."""
    return (
        f"(SELECT coalesce(sum((r->>'percentage')::numeric), 0) FROM jsonb_array_elements({_array(rates)}) r"
        " WHERE jsonb_typeof(r->'percentage') = 'number' AND r->'inclusive' = 'true')"
    )


def _state_of(sub: str) -> str:
    """What of a subscription object decides its MRR, in one canonical form: its status,
    and per item the price, quantity, discounts and the tax rates included in the price (the
    item's own, else the subscription's defaults); the subscription's discounts. Used for
    the events' objects and the snapshots alike, so equal states compare equal. `sub` is
    evaluated once (OFFSET 0 keeps the planner from pasting it into every reference below):
    each reference to a landed payload decompresses all of it again."""
    return f"""(SELECT jsonb_build_object(
        'id', s->'id',
        'status', s->'status',
        'discounts', {_ids("s->'discounts'")},
        'items', coalesce((
            SELECT jsonb_agg(jsonb_build_object(
                'id', i->'id',
                'price', coalesce(i->'price'->'id', i->'price'),
                'quantity', CASE WHEN jsonb_typeof(i->'quantity') = 'number' THEN i->'quantity' END,
                'discounts', {_ids("i->'discounts'")},
                'included_tax', CASE WHEN jsonb_typeof(i->'tax_rates') = 'array'
                                      AND jsonb_array_length(i->'tax_rates') > 0
                                     THEN {_included_tax("i->'tax_rates'")}
                                     ELSE {_included_tax("s->'default_tax_rates'")} END
            ) ORDER BY i->>'id')
            FROM jsonb_array_elements({_array("s->'items'->'data'")}) i
            WHERE jsonb_typeof(i->'id') = 'string'), '[]'))
        FROM (SELECT {sub} AS s OFFSET 0) one)"""


# What `_state_of` reads of a landed subscription, taken out of its payload in one
# decompression (absent and null fields give the same state).
_STATE_FIELDS = "id jsonb, status jsonb, discounts jsonb, items jsonb, default_tax_rates jsonb"


def _state_fields(alias: str) -> str:
    return (
        f"jsonb_build_object('id', {alias}.id, 'status', {alias}.status, 'discounts',"
        f" {alias}.discounts, 'items', {alias}.items, 'default_tax_rates', {alias}.default_tax_rates)"
    )


# Step 0: a snapshot of each subscription this sync landed (or that has none yet) whose state
# differs from its latest one, as observed at this sync (the provider's clock). From the first
# sync on, the snapshots and the events say what each subscription was at every instant, even
# when events were missed. A landed copy this sync did not write may be stale (the event that
# would have had it fetched again was missed): it is not observed again.
_SNAPSHOT = f"""
SELECT kpi.open_raw_stage();
CREATE TEMP TABLE st_landed_states ON COMMIT DROP AS
SELECT r.workspace_id, r.record_id, r.fetched_at, {_state_of(_state_fields("f"))} AS state
FROM raw_records r, jsonb_to_record(r.payload) AS f({_STATE_FIELDS})
WHERE r.source = 'stripe' AND r.stream = 'subscriptions';

CREATE TEMP TABLE st_latest_states ON COMMIT DROP AS
SELECT DISTINCT ON (payload->'subscription'->>'id')
       payload->'subscription'->>'id' AS sub_id, payload->'subscription' AS state
FROM raw_records
WHERE source = 'stripe' AND stream = 'subscription_states'
  AND (payload->>'observed_at')::bigint <= %(observed)s
ORDER BY payload->'subscription'->>'id', (payload->>'observed_at')::bigint DESC;

INSERT INTO pg_temp.raw_stage (workspace_id, source, stream, record_id, payload,
                               source_updated_at)
SELECT s.workspace_id, 'stripe', 'subscription_states', s.record_id || '@' || %(observed)s,
       jsonb_build_object('observed_at', %(observed)s, 'subscription', s.state),
       to_timestamp(%(observed)s)
FROM st_landed_states s
LEFT JOIN st_latest_states latest ON latest.sub_id = s.record_id
WHERE latest.state IS DISTINCT FROM s.state
  AND (s.fetched_at >= %(landed_since)s OR latest.state IS NULL);
-- landed through the write path's merge: a snapshot observed at the same instant as an
-- earlier sync's (no event since) is this sync's later read (a reconcile that healed a
-- missed change), so it replaces that one
SELECT kpi.merge_raw_stage(now())
"""

# Step 3: what each subscription was at each instant, where it is known: the events' objects
# (and the state before the first of them, from its previous_attributes) and the snapshots.
# The known era of a subscription starts when the events start (30 days before the first
# snapshot, or the oldest event landed) or when it was created; a state no event explains
# has held since the era's start (Stripe would have sent an event for a later change). A
# deletion has no previous_attributes: when it is the first event known, the era starts
# with it.
_OBSERVED = f"""
CREATE TEMP TABLE st_observations ON COMMIT DROP AS
SELECT e.data->'object'->>'id' AS sub_id,
       to_timestamp((e.created #>> '{{}}')::bigint) AS t, 0 AS rank, e.type #>> '{{}}' AS type,
       {_state_of("(e.data->'object')")} AS state,
       -- what it was before: needed of a subscription's first event only (filled below)
       NULL::jsonb AS before, r.record_id AS event_id,
       jsonb_typeof(e.data->'previous_attributes') = 'object' AS has_before,
       -- the same for every event, while its payload is at hand (cheaper than reading the
       -- first events' payloads again)
       CASE WHEN jsonb_typeof(e.data->'previous_attributes') = 'object'
            THEN {_state_of("((e.data->'object') || (e.data->'previous_attributes'))")}
       END AS prior
FROM raw_records r, jsonb_to_record(r.payload) AS e(data jsonb, created jsonb, type jsonb)
WHERE r.source = 'stripe' AND r.stream = 'subscription_events'
  AND jsonb_typeof(e.data->'object') = 'object'
UNION ALL
SELECT payload->'subscription'->>'id', to_timestamp((payload->>'observed_at')::bigint), 1,
       'snapshot', payload->'subscription', NULL, NULL, false, NULL
FROM raw_records WHERE source = 'stripe' AND stream = 'subscription_states';

UPDATE st_observations o
SET before = o.prior
FROM (SELECT DISTINCT ON (sub_id) sub_id, event_id FROM st_observations
      ORDER BY sub_id, t, rank) first
WHERE o.event_id = first.event_id AND o.has_before;

CREATE TEMP TABLE st_eras ON COMMIT DROP AS
WITH known_since AS (
    SELECT least((SELECT min(t) FROM st_observations WHERE rank = 1) - interval '30 days',
                 (SELECT min(t) FROM st_observations WHERE rank = 0)) AS t
), firsts AS (
    SELECT DISTINCT ON (sub_id) * FROM st_observations ORDER BY sub_id, t, rank
)
SELECT s.sub_id,
       CASE WHEN f.sub_id IS NULL THEN 'infinity'
            -- what it was before a deletion (which has no previous_attributes) is not known
            WHEN f.rank = 0 AND f.before IS NULL AND f.type <> 'customer.subscription.created'
            THEN f.t
            ELSE greatest(s.started, (SELECT t FROM known_since)) END AS era_start
FROM st_subs s LEFT JOIN firsts f USING (sub_id);

CREATE TEMP TABLE st_states ON COMMIT DROP AS
WITH ordered AS (
    SELECT o.*, row_number() OVER (PARTITION BY sub_id ORDER BY t, rank) AS n
    FROM st_observations o JOIN st_eras e USING (sub_id)
), states AS (
    SELECT o.sub_id, e.era_start AS t, 0 AS n, coalesce(o.before, o.state) AS state
    FROM ordered o JOIN st_eras e USING (sub_id) WHERE o.n = 1
    UNION ALL
    SELECT sub_id, t, n, state FROM ordered
), spans AS (
    SELECT sub_id, t AS valid_from,
           coalesce(lead(t) OVER (PARTITION BY sub_id ORDER BY t, n), 'infinity') AS valid_to,
           state
    FROM states
)
SELECT * FROM spans WHERE valid_from < valid_to
"""

# Step 4a: every discount object landed anywhere (subscriptions, their items, invoices),
# with its coupon's terms.
_DISCOUNTS = """
CREATE TEMP TABLE st_coupons ON COMMIT DROP AS
SELECT payload->>'id' AS id, payload AS coupon FROM raw_records
WHERE source = 'stripe' AND stream = 'coupons';

CREATE TEMP TABLE st_discount_objects ON COMMIT DROP AS
WITH discount_objects AS (
    SELECT coalesce(d->>'subscription', sub.id #>> '{}') AS sub_id, d, n AS listed_at
    FROM raw_records r, jsonb_to_record(r.payload) AS sub(id jsonb, discounts jsonb),
         jsonb_array_elements(CASE WHEN jsonb_typeof(sub.discounts) = 'array' THEN sub.discounts ELSE '[]' END) WITH ORDINALITY AS ds(d, n)
    WHERE r.source = 'stripe' AND r.stream = 'subscriptions' AND jsonb_typeof(d) = 'object'
    UNION ALL
    SELECT coalesce(d->>'subscription', sub.id #>> '{}'), d, NULL
    FROM raw_records r, jsonb_to_record(r.payload) AS sub(id jsonb, items jsonb),
         jsonb_array_elements(CASE WHEN jsonb_typeof(sub.items->'data') = 'array' THEN sub.items->'data' ELSE '[]' END) i,
         jsonb_array_elements(CASE WHEN jsonb_typeof(i->'discounts') = 'array' THEN i->'discounts' ELSE '[]' END) d
    WHERE r.source = 'stripe' AND r.stream = 'subscriptions' AND jsonb_typeof(d) = 'object'
    UNION ALL
    -- an invoice's discounts that are its subscription's (not those of the invoice alone, of
    -- one of its items, or of the customer), whatever their coupons' durations
    SELECT d->>'subscription', d, NULL
    FROM raw_records r, jsonb_to_record(r.payload) AS inv(discounts jsonb),
         jsonb_array_elements(CASE WHEN jsonb_typeof(inv.discounts) = 'array' THEN inv.discounts ELSE '[]' END) d
    WHERE r.source = 'stripe' AND r.stream = 'invoices' AND jsonb_typeof(d) = 'object'
      AND d->>'subscription' IS NOT NULL AND d->>'invoice' IS NULL AND d->>'invoice_item' IS NULL
)
SELECT DISTINCT ON (d->>'id') sub_id, d, listed_at FROM discount_objects
WHERE d->>'id' IS NOT NULL ORDER BY d->>'id', listed_at;

-- every discount object landed anywhere, with its coupon's terms
CREATE TEMP TABLE st_discount_terms ON COMMIT DROP AS
SELECT u.d->>'id' AS id, u.sub_id, u.d->>'subscription_item' AS item_id, u.listed_at,
       to_timestamp((u.d->>'start')::bigint) AS valid_from,
       coalesce(to_timestamp((u.d->>'end')::bigint), 'infinity') AS valid_to,
       c.coupon->>'duration' = 'forever' AS forever,
       (c.coupon->>'percent_off')::numeric AS percent_off,
       -- an amount off is in the coupon's currency, else in its option for the subscription's
       CASE WHEN c.coupon->>'currency' IS NULL OR upper(c.coupon->>'currency') = s.currency
            THEN (c.coupon->>'amount_off')::numeric
            ELSE (c.coupon->'currency_options'->lower(s.currency)->>'amount_off')::numeric
       END AS amount_off,
       -- the products it is limited to (applies_to.products); null: every item
       CASE WHEN jsonb_typeof(c.coupon->'applies_to'->'products') = 'array'
             AND jsonb_array_length(c.coupon->'applies_to'->'products') > 0
            THEN ARRAY(SELECT jsonb_array_elements_text(c.coupon->'applies_to'->'products'))
       END AS products
FROM st_discount_objects u
LEFT JOIN st_subs s ON s.sub_id = u.sub_id
CROSS JOIN LATERAL (
    -- the coupon as landed (its includable fields expanded), else as the discount embeds it
    SELECT coalesce(
        (SELECT landed.coupon FROM st_coupons landed
         WHERE landed.id = coalesce(u.d->'source'->'coupon'->>'id', u.d->'source'->>'coupon',
                                    u.d->'coupon'->>'id', u.d->>'coupon')),
        CASE WHEN jsonb_typeof(u.d->'source'->'coupon') = 'object' THEN u.d->'source'->'coupon' END,
        CASE WHEN jsonb_typeof(u.d->'coupon') = 'object' THEN u.d->'coupon' END,
        '{}'::jsonb
    ) AS coupon
) c;
"""

# Step 4: each item's state as intervals (price, quantity, its discounts, the tax its price
# includes): from the known states in a subscription's era, from invoice lines before it
# (every billing period has a line per item; a mid-period change adds proration lines from
# the change on).
_ITEM_SPANS = """
CREATE TEMP TABLE st_item_spans ON COMMIT DROP AS
WITH starts AS (
    SELECT DISTINCT item_id, p_start FROM st_lines
), boundaries AS (
    SELECT item_id, p_start, lead(p_start) OVER (PARTITION BY item_id ORDER BY p_start) AS next_start
    FROM starts
), line_states AS (
    SELECT DISTINCT ON (item_id, p_start) *
    FROM st_lines WHERE amount >= 0
    ORDER BY item_id, p_start, invoice_created DESC
), current_items AS (
    SELECT DISTINCT ON (i->>'id') i->>'id' AS item_id, i AS item
    FROM st_states st, jsonb_array_elements(st.state->'items') i
    ORDER BY i->>'id', st.valid_from DESC
), from_lines AS (
    SELECT s.sub_id, s.item_id, s.price_id, s.quantity, s.p_start AS valid_from,
           -- A state holds until the item's next line starts, or its period ends before that
           -- (a gap: nothing was billed, say while paused). The latest line of an item the
           -- subscription still has holds on past its period's end (the renewal invoice does
           -- not exist yet); a dropped item's ends.
           CASE WHEN b.next_start IS NOT NULL THEN least(b.next_start, s.p_end)
                WHEN c.item_id IS NULL THEN s.p_end ELSE 'infinity' END AS valid_to,
           coalesce((c.item->>'included_tax')::numeric, 0) AS included_tax
    FROM line_states s
    JOIN boundaries b USING (item_id, p_start)
    LEFT JOIN current_items c ON c.item_id = s.item_id
), before_era AS (
    SELECT f.sub_id, f.item_id, f.price_id, f.quantity, f.valid_from,
           least(f.valid_to, e.era_start) AS valid_to, f.included_tax
    FROM from_lines f JOIN st_eras e USING (sub_id)
    WHERE f.valid_from < least(f.valid_to, e.era_start)
), item_discounts AS (
    SELECT id, item_id, valid_from, valid_to FROM st_discount_terms WHERE item_id IS NOT NULL
), cuts AS (
    -- an item's discounts start and end by their own dates: its states are cut there
    SELECT item_id, valid_from AS span_from, valid_from AS t FROM before_era
    UNION
    SELECT b.item_id, b.valid_from, x.t
    FROM before_era b
    JOIN (SELECT item_id, valid_from AS t FROM item_discounts
          UNION SELECT item_id, valid_to FROM item_discounts WHERE valid_to < 'infinity') x
      ON x.item_id = b.item_id AND x.t > b.valid_from AND x.t < b.valid_to
), pieces AS (
    SELECT b.sub_id, b.item_id, b.price_id, b.quantity, b.included_tax, c.t AS piece_from,
           coalesce(lead(c.t) OVER (PARTITION BY c.item_id, c.span_from ORDER BY c.t),
                    b.valid_to) AS piece_to
    FROM cuts c JOIN before_era b ON b.item_id = c.item_id AND b.valid_from = c.span_from
)
SELECT p.sub_id, p.item_id, p.price_id, p.quantity, p.piece_from AS valid_from,
       p.piece_to AS valid_to,
       coalesce(jsonb_agg(d.id ORDER BY d.valid_from, d.id) FILTER (WHERE d.id IS NOT NULL),
                '[]') AS discounts,
       p.included_tax
FROM pieces p
LEFT JOIN item_discounts d
  ON d.item_id = p.item_id AND d.valid_from <= p.piece_from AND p.piece_from < d.valid_to
GROUP BY p.sub_id, p.item_id, p.price_id, p.quantity, p.piece_from, p.piece_to, p.included_tax
UNION ALL
SELECT st.sub_id, i->>'id', i->>'price', coalesce((i->>'quantity')::numeric, 1),
       st.valid_from, st.valid_to, i->'discounts', (i->>'included_tax')::numeric
FROM st_states st, jsonb_array_elements(st.state->'items') i
"""

# Step 5: the items priced per month in their subscription's currency: licensed only, by
# packages (transform_quantity) or tiers, each period's amount rounded to the minor unit as
# its invoice line is; and the share of it that is not tax (the tax rates it includes, or
# Stripe Tax's inclusive amounts on the item's latest line). Discounts come in step 7.
_ITEM_STATES = """
-- Stripe Tax: the share of inclusive tax on the latest line of an item that has some
CREATE TEMP TABLE st_line_tax ON COMMIT DROP AS
SELECT DISTINCT ON (item_id) item_id, inclusive_tax_share AS share
FROM st_lines WHERE inclusive_tax_share > 0
ORDER BY item_id, invoice_created DESC;

CREATE TEMP TABLE st_item_states ON COMMIT DROP AS
SELECT s.sub_id, s.item_id, s.valid_from, s.valid_to, s.discounts, p.product,
       CASE WHEN p.usage_type = 'licensed' THEN p.monthly_factor::float8 END AS monthly_factor,
       greatest(0, round(CASE WHEN p.usage_type <> 'licensed' THEN 0
                              WHEN p.billing_scheme = 'tiered' THEN tiered.amount
                              ELSE p.unit_amount * CASE WHEN p.divide_by IS NULL THEN s.quantity
                                                        WHEN p.round_to = 'down' THEN floor(s.quantity / p.divide_by)
                                                        ELSE ceil(s.quantity / p.divide_by) END
                         END) * p.monthly_factor)::float8 AS gross,
       CASE WHEN s.included_tax > 0 THEN 1 / (1 + s.included_tax::float8 / 100)
            WHEN p.tax_behavior = 'inclusive' THEN 1 - coalesce(lt.share, 0)
            ELSE 1 END AS net_share
FROM st_item_spans s
JOIN st_subs sub ON sub.sub_id = s.sub_id
JOIN st_prices p ON p.id = s.price_id AND p.currency = sub.currency
LEFT JOIN st_line_tax lt ON lt.item_id = s.item_id
LEFT JOIN LATERAL (
    SELECT CASE WHEN p.tiers_mode = 'volume' THEN
                  max(CASE WHEN s.quantity > t.lower_bound AND (t.up_to IS NULL OR s.quantity <= t.up_to)
                           THEN s.quantity * t.unit + t.flat END)
                ELSE
                  sum(CASE WHEN s.quantity > t.lower_bound
                           THEN (least(s.quantity, coalesce(t.up_to, s.quantity)) - t.lower_bound) * t.unit + t.flat
                           ELSE 0 END)
           END AS amount
    FROM (
        SELECT (tier->>'up_to')::numeric AS up_to,
               coalesce(lag((tier->>'up_to')::numeric) OVER (ORDER BY n), 0) AS lower_bound,
               coalesce((tier->>'unit_amount_decimal')::numeric, (tier->>'unit_amount')::numeric, 0) AS unit,
               coalesce((tier->>'flat_amount_decimal')::numeric, (tier->>'flat_amount')::numeric, 0) AS flat
        FROM jsonb_array_elements(CASE WHEN jsonb_typeof(p.tiers) = 'array' THEN p.tiers ELSE '[]' END) WITH ORDINALITY AS tiers(tier, n)
    ) t
) tiered ON p.billing_scheme = 'tiered'
"""

# Step 6: the spells when a subscription is worth nothing, and its forever discounts. In its
# known era: every status but active and past_due (kpi-definitions.md), and the discounts
# its states carry. Before it: trials, ended subscriptions, invoices marked uncollectible,
# the whole life of one that never got past incomplete, and the unpaid or paused spell its
# era starts in.
_SPELLS = """
-- what the metrics read of the charges (failed ones here, succeeded ones for revenue)
CREATE TEMP TABLE st_charges ON COMMIT DROP AS
SELECT c.status #>> '{}' AS status, coalesce(c.customer->>'id', c.customer #>> '{}') AS customer,
       c.currency #>> '{}' AS currency, c.created #>> '{}' AS created,
       c.amount_captured #>> '{}' AS amount_captured
FROM raw_records r,
     jsonb_to_record(r.payload)
       AS c(status jsonb, customer jsonb, currency jsonb, created jsonb, amount_captured jsonb)
WHERE r.source = 'stripe' AND r.stream = 'charges';

-- invoices marked uncollectible by dunning, after payment attempts (pause_collection marks
-- invoices it never tried)
CREATE TEMP TABLE st_dunned ON COMMIT DROP AS
SELECT coalesce(inv.parent->'subscription_details'->>'subscription',
                inv.subscription #>> '{}') AS sub_id,
       to_timestamp((inv.status_transitions->>'marked_uncollectible_at')::bigint) AS marked_at,
       to_timestamp((inv.status_transitions->>'paid_at')::bigint) AS paid_at
FROM raw_records r,
     jsonb_to_record(r.payload)
       AS inv(parent jsonb, subscription jsonb, status_transitions jsonb, attempt_count jsonb)
WHERE r.source = 'stripe' AND r.stream = 'invoices'
  AND inv.status_transitions->>'marked_uncollectible_at' IS NOT NULL
  AND coalesce((inv.attempt_count #>> '{}')::int, 1) > 0;

CREATE TEMP TABLE st_zero_spells ON COMMIT DROP AS
WITH first_states AS (
    SELECT DISTINCT ON (sub_id) * FROM st_states ORDER BY sub_id, valid_from
), unpaid_since AS (
    -- the last failed charge of its customer before the era of each subscription unpaid then
    SELECT s.sub_id, max(c.created) AS since
    FROM st_subs s
    JOIN first_states first ON first.sub_id = s.sub_id AND first.state->>'status' = 'unpaid'
    JOIN (SELECT customer, to_timestamp(created::bigint) AS created FROM st_charges
          WHERE status = 'failed') c
      ON c.customer = s.customer AND c.created < first.valid_from
    GROUP BY s.sub_id
), before_era AS (
    SELECT sub_id, trial_start AS zero_from, trial_end AS zero_to FROM st_subs
    WHERE trial_start IS NOT NULL AND trial_end IS NOT NULL
    UNION ALL
    SELECT sub_id, ended_at, 'infinity' FROM st_subs WHERE ended_at IS NOT NULL
    UNION ALL
    SELECT sub_id, started, 'infinity' FROM st_subs
    WHERE status IN ('incomplete', 'incomplete_expired')
    UNION ALL
    SELECT s.sub_id, d.marked_at, coalesce(d.paid_at, s.ended_at, 'infinity')
    FROM st_dunned d JOIN st_subs s USING (sub_id)
    UNION ALL
    -- unpaid when its era starts, its invoices left open: since its customer's last failed
    -- charge (the last retry); paused then: since its trial ended without a payment method
    SELECT s.sub_id,
           CASE first.state->>'status' WHEN 'unpaid' THEN u.since ELSE s.trial_end END,
           'infinity'
    FROM st_subs s
    JOIN first_states first ON first.sub_id = s.sub_id
    LEFT JOIN unpaid_since u ON u.sub_id = s.sub_id
    WHERE first.state->>'status' IN ('unpaid', 'paused')
      -- an invoice marked uncollectible dates the unpaid spell itself
      AND NOT EXISTS (SELECT FROM st_dunned d WHERE d.sub_id = s.sub_id)
)
SELECT b.sub_id, b.zero_from, least(b.zero_to, e.era_start) AS zero_to
FROM before_era b JOIN st_eras e USING (sub_id)
WHERE b.zero_from IS NOT NULL AND b.zero_from < least(b.zero_to, e.era_start)
UNION ALL
SELECT sub_id, valid_from, valid_to FROM st_states
WHERE coalesce(state->>'status', '') NOT IN ('active', 'past_due');

-- in the order they apply: as the subscription lists them, else as they were added
CREATE TEMP TABLE st_discounts ON COMMIT DROP AS
SELECT d.sub_id, d.valid_from, least(d.valid_to, e.era_start) AS valid_to, d.percent_off,
       d.amount_off, d.products,
       -- as they were added; those added together as the subscription lists them
       extract(epoch FROM d.valid_from)::float8 + coalesce(d.listed_at, 0) / 1000.0 AS position
FROM st_discount_terms d JOIN st_eras e USING (sub_id)
WHERE d.forever AND d.item_id IS NULL AND d.valid_from < least(d.valid_to, e.era_start)
UNION ALL
SELECT st.sub_id, st.valid_from, st.valid_to, d.percent_off, d.amount_off, d.products, ds.n::float8
FROM st_states st,
     jsonb_array_elements_text(st.state->'discounts') WITH ORDINALITY AS ds(did, n)
JOIN st_discount_terms d ON d.id = ds.did
WHERE d.forever;
"""


# Step 7: each subscription's MRR after every instant at which something about it changes:
# its items' values, discounted one discount after the other as its invoices are (each item's
# own forever discounts on that item, then the subscription's in their order on the items of
# the products each applies to; a percentage takes its share of each, an amount off, normalized
# to a month like the price, is shared among them in proportion to what they have left), then
# net of the tax each item includes.
_SUB_VALUES = """
CREATE TEMP TABLE st_sub_values ON COMMIT DROP AS
WITH RECURSIVE instants AS (
    SELECT sub_id, valid_from AS t FROM st_item_states
    UNION SELECT sub_id, valid_to FROM st_item_states WHERE valid_to < 'infinity'
    UNION SELECT sub_id, zero_from FROM st_zero_spells
    UNION SELECT sub_id, zero_to FROM st_zero_spells WHERE zero_to < 'infinity'
    UNION SELECT sub_id, valid_from FROM st_discounts
    UNION SELECT sub_id, valid_to FROM st_discounts WHERE valid_to < 'infinity'
), items_at AS (
    SELECT i.sub_id, i.t, s.item_id, s.gross, s.net_share, s.product, s.monthly_factor,
           s.discounts
    FROM instants i JOIN st_item_states s
      ON s.sub_id = i.sub_id AND s.valid_from <= i.t AND i.t < s.valid_to
), items AS (
    SELECT sub_id, t,
           array_agg(gross ORDER BY item_id) AS gross,
           array_agg(item_id ORDER BY item_id) AS item_ids,
           array_agg(product ORDER BY item_id) AS products,
           array_agg(net_share ORDER BY item_id) AS net_shares,
           -- an amount off is normalized to a month like the prices it discounts
           coalesce(max(monthly_factor), 1) AS monthly_factor,
           sum(gross * net_share) AS net
    FROM items_at GROUP BY sub_id, t
), discounts_at AS (
    SELECT a.sub_id, a.t, 0 AS scope, ds.n::float8 AS position, d.percent_off,
           d.amount_off, ARRAY[a.item_id] AS item_ids, NULL::text[] AS products
    FROM items_at a,
         jsonb_array_elements_text(CASE WHEN jsonb_typeof(a.discounts) = 'array' THEN a.discounts ELSE '[]' END)
           WITH ORDINALITY AS ds(did, n)
    JOIN st_discount_terms d ON d.id = ds.did
    WHERE d.forever
    UNION ALL
    SELECT i.sub_id, i.t, 1, d.position, d.percent_off, d.amount_off, NULL, d.products
    FROM instants i JOIN st_discounts d
      ON d.sub_id = i.sub_id AND d.valid_from <= i.t AND i.t < d.valid_to
), ordered AS (
    SELECT *, row_number() OVER (PARTITION BY sub_id, t ORDER BY scope, position) AS n
    FROM discounts_at
), applied AS (
    SELECT it.sub_id, it.t, 0::bigint AS n, it.gross, it.item_ids, it.products, it.net_shares,
           it.monthly_factor
    FROM items it
    WHERE EXISTS (SELECT FROM ordered o WHERE o.sub_id = it.sub_id AND o.t = it.t)
    UNION ALL
    SELECT a.sub_id, a.t, a.n + 1,
           (SELECT array_agg(CASE WHEN x.hit THEN x.v * k.kept ELSE x.v END ORDER BY x.o)
            FROM (SELECT v, o, CASE WHEN d.item_ids IS NOT NULL THEN id = ANY(d.item_ids)
                                    ELSE d.products IS NULL OR product = ANY(d.products) END AS hit
                  FROM unnest(a.gross, a.item_ids, a.products) WITH ORDINALITY AS u(v, id, product, o)) x),
           a.item_ids, a.products, a.net_shares, a.monthly_factor
    FROM applied a
    JOIN ordered d ON d.sub_id = a.sub_id AND d.t = a.t AND d.n = a.n + 1
    CROSS JOIN LATERAL (
        SELECT CASE WHEN d.percent_off IS NOT NULL
                    THEN greatest(0, 1 - d.percent_off::float8 / 100)
                    WHEN d.amount_off IS NOT NULL AND e.hit_value > 0
                    THEN 1 - least(e.hit_value, d.amount_off::float8 * a.monthly_factor) / e.hit_value
                    ELSE 1 END AS kept
        FROM (SELECT coalesce(sum(v), 0) AS hit_value
              FROM unnest(a.gross, a.item_ids, a.products) AS u(v, id, product)
              WHERE CASE WHEN d.item_ids IS NOT NULL THEN id = ANY(d.item_ids)
                         ELSE d.products IS NULL OR product = ANY(d.products) END) e
    ) k
), discounted AS (
    SELECT DISTINCT ON (sub_id, t) sub_id, t,
           (SELECT sum(v * share) FROM unnest(gross, net_shares) AS u(v, share)) AS net
    FROM applied ORDER BY sub_id, t, n DESC
), zero_at AS (
    SELECT DISTINCT i.sub_id, i.t
    FROM instants i JOIN st_zero_spells z
      ON z.sub_id = i.sub_id AND z.zero_from <= i.t AND i.t < z.zero_to
)
SELECT i.sub_id, i.t,
       CASE WHEN z.t IS NOT NULL THEN 0
            ELSE greatest(0, coalesce(d.net, it.net, 0)) END AS mrr
FROM instants i
LEFT JOIN items it USING (sub_id, t)
LEFT JOIN discounted d USING (sub_id, t)
LEFT JOIN zero_at z USING (sub_id, t)
WHERE i.t IS NOT NULL
"""

# Step 8: each customer's MRR as levels between the days it changes (sparse: a customer who
# pays the same for a year is one row, not 365), each customer's reporting span, and per
# currency and day the running totals (MRR, paying customers, spans covering the day).
_LEVELS = """
CREATE TEMP TABLE st_changes ON COMMIT DROP AS
WITH sub_days AS (
    -- a subscription's value at the end of each local day on which it changed
    SELECT DISTINCT ON (v.sub_id, day) v.sub_id, s.customer, s.currency,
           (v.t AT TIME ZONE %(tz)s)::date AS day, v.mrr
    FROM st_sub_values v JOIN st_subs s USING (sub_id)
    ORDER BY v.sub_id, day, v.t DESC
), deltas AS (
    SELECT customer, currency, day,
           mrr - coalesce(lag(mrr) OVER (PARTITION BY sub_id ORDER BY day), 0) AS delta
    FROM sub_days
)
SELECT customer, currency, day,
       sum(sum(delta)) OVER (PARTITION BY customer, currency ORDER BY day) AS mrr
FROM deltas GROUP BY customer, currency, day;

CREATE TEMP TABLE st_levels ON COMMIT DROP AS
WITH settled AS (
    SELECT customer, currency, day,
           CASE WHEN abs(mrr) < 0.000001 THEN 0 ELSE mrr END AS mrr
    FROM st_changes WHERE day <= %(today)s::date
)
SELECT customer, currency, day AS valid_from,
       coalesce(lead(day) OVER w, 'infinity') AS valid_to,
       mrr,
       coalesce(lag(mrr) OVER w, 0) AS prev,
       coalesce(bool_or(mrr > 0) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), false)
         AS paid_before
FROM settled
WINDOW w AS (PARTITION BY customer, currency ORDER BY day);

-- A customer is reported from its first change until today, or until 31 days after it
-- stopped paying (the 30-day cohort metrics still see it).
CREATE TEMP TABLE st_spans ON COMMIT DROP AS
SELECT customer, currency, min(day) AS first_day,
       least(%(today)s::date,
             CASE WHEN (array_agg(mrr ORDER BY day DESC))[1] > 0.000001 THEN %(today)s::date
                  ELSE max(day) + 31 END) AS last_day
FROM st_changes GROUP BY customer, currency;

CREATE TEMP TABLE st_currency_days ON COMMIT DROP AS
WITH series AS (
    SELECT c.currency, d::date AS day
    FROM (SELECT currency, min(first_day) AS first_day FROM st_spans GROUP BY currency) c,
         generate_series(c.first_day, %(today)s::date, interval '1 day') d
), coverage AS (
    SELECT currency, day, sum(n) AS n
    FROM (SELECT currency, first_day AS day, 1 AS n FROM st_spans
          UNION ALL
          SELECT currency, last_day + 1, -1 FROM st_spans) edges
    GROUP BY currency, day
), level_changes AS (
    SELECT currency, valid_from AS day, sum(mrr - prev) AS mrr,
           sum((mrr > 0)::int - (prev > 0)::int) AS paying
    FROM st_levels GROUP BY currency, valid_from
)
SELECT s.currency, s.day,
       (sum(coalesce(c.n, 0)) OVER w)::bigint AS covered,
       sum(coalesce(l.mrr, 0)) OVER w AS mrr,
       (sum(coalesce(l.paying, 0)) OVER w)::bigint AS paying
FROM series s
LEFT JOIN coverage c USING (currency, day)
LEFT JOIN level_changes l USING (currency, day)
WINDOW w AS (PARTITION BY s.currency ORDER BY s.day ROWS UNBOUNDED PRECEDING);

CREATE TEMP TABLE st_moves ON COMMIT DROP AS
SELECT customer, currency, valid_from AS day,
       CASE WHEN prev = 0 AND mrr > 0 AND NOT paid_before THEN mrr ELSE 0 END AS new_amt,
       CASE WHEN prev = 0 AND mrr > 0 AND paid_before THEN mrr ELSE 0 END AS reactivation_amt,
       CASE WHEN prev > 0 AND mrr > prev THEN mrr - prev ELSE 0 END AS expansion_amt,
       CASE WHEN prev > 0 AND mrr > 0 AND mrr < prev THEN prev - mrr ELSE 0 END AS contraction_amt,
       CASE WHEN prev > 0 AND mrr = 0 THEN prev ELSE 0 END AS churn_amt
FROM st_levels
WHERE mrr <> prev
"""

_RATES = """
CREATE TEMP TABLE st_rates ON COMMIT DROP AS
WITH needed AS (
    SELECT currency, day FROM st_currency_days WHERE covered > 0
    UNION SELECT DISTINCT currency, day FROM st_money
), found AS (
    SELECT n.currency, n.day,
           CASE WHEN n.currency = %(reporting)s THEN 1.0
                ELSE coalesce(direct.rate, 1.0 / inverse.rate) END AS rate
    FROM needed n
    LEFT JOIN fx_rates direct
      ON direct.base = n.currency AND direct.quote = %(reporting)s AND direct.day = n.day
    LEFT JOIN fx_rates inverse
      ON inverse.base = %(reporting)s AND inverse.quote = n.currency AND inverse.day = n.day
)
SELECT currency, day, rate,
       (rate / CASE WHEN currency = ANY(%(zero_decimal)s) THEN 1
                    WHEN currency = ANY(%(three_decimal)s) THEN 1000 ELSE 100 END)::float8
         AS to_reporting  -- per minor unit
FROM found
"""

# Revenue, refunds and net revenue: money that moved, per local day and currency.
_MONEY = """
CREATE TEMP TABLE st_money ON COMMIT DROP AS
SELECT 'revenue' AS metric, upper(currency) AS currency,
       (to_timestamp(created::bigint) AT TIME ZONE %(tz)s)::date AS day,
       sum(amount_captured::numeric) AS amount
FROM st_charges WHERE status = 'succeeded'
GROUP BY 2, 3
UNION ALL
SELECT 'refunds', upper(f.currency #>> '{}'),
       (to_timestamp((f.created #>> '{}')::bigint) AT TIME ZONE %(tz)s)::date,
       sum((f.amount #>> '{}')::numeric)
FROM raw_records r,
     jsonb_to_record(r.payload) AS f(currency jsonb, created jsonb, amount jsonb, status jsonb)
WHERE r.source = 'stripe' AND r.stream = 'refunds'
  AND coalesce(f.status #>> '{}', 'succeeded') = 'succeeded'
GROUP BY 2, 3
UNION ALL
SELECT 'net_revenue', upper(b.currency #>> '{}'),
       (to_timestamp((b.created #>> '{}')::bigint) AT TIME ZONE %(tz)s)::date,
       sum((b.net #>> '{}')::numeric)
FROM raw_records r,
     jsonb_to_record(r.payload) AS b(currency jsonb, created jsonb, net jsonb, reporting_category jsonb, type jsonb)
WHERE r.source = 'stripe' AND r.stream = 'balance_transactions'
  AND coalesce(b.reporting_category #>> '{}', b.type #>> '{}') IN ('charge', 'refund', 'payment', 'payment_refund')
GROUP BY 2, 3
"""

# Every daily MRR metric from the sparse tables: totals and counts from the per-currency
# running totals, movements from st_moves, and the 30-day cohort ratios (the customers who
# paid 30 days before) from intervals: a movement counts on the days [its day, +30) on which
# its customer is in the cohort, a stretch found by joining intervals, not by walking days.
_DAILY = """
WITH rated AS (
    SELECT cd.currency, cd.day, cd.mrr, cd.paying, r.to_reporting
    FROM st_currency_days cd JOIN st_rates r USING (currency, day)
    WHERE cd.covered > 0
), totals AS (
    SELECT day, sum(mrr * to_reporting) AS mrr, sum(paying)::bigint AS active_customers
    FROM rated GROUP BY day
), fx AS (
    -- what only the rate changed: yesterday's MRR at today's rate minus at yesterday's
    SELECT day, sum(adjustment) AS fx_adjustment_mrr
    FROM (SELECT day, coalesce(lag(mrr) OVER w, 0)
                      * (to_reporting - coalesce(lag(to_reporting) OVER w, to_reporting))
                        AS adjustment
          FROM rated WINDOW w AS (PARTITION BY currency ORDER BY day)) per_currency
    GROUP BY day
), moves AS (
    SELECT m.*, m.day + 30 AS counted_until, r.to_reporting
    FROM st_moves m JOIN st_rates r USING (currency, day)
), daily_moves AS (
    SELECT day,
           sum(new_amt * to_reporting) AS new_mrr,
           sum(expansion_amt * to_reporting) AS expansion_mrr,
           sum(contraction_amt * to_reporting) AS contraction_mrr,
           sum(churn_amt * to_reporting) AS churned_mrr,
           sum(reactivation_amt * to_reporting) AS reactivation_mrr,
           count(*) FILTER (WHERE new_amt > 0) AS new_customers,
           count(*) FILTER (WHERE churn_amt > 0) AS churned_customers
    FROM moves GROUP BY day
), cohort_member AS (
    -- a customer is in day d's cohort while it paid on day d - 30
    SELECT customer, currency, valid_from + 30 AS member_from, valid_to + 30 AS member_until
    FROM st_levels WHERE mrr > 0
), move_pieces AS (
    SELECT greatest(m.day, c.member_from) AS from_day, least(m.counted_until, c.member_until) AS until,
           m.churn_amt * m.to_reporting AS churn,
           m.contraction_amt * m.to_reporting AS contraction,
           m.expansion_amt * m.to_reporting AS expansion,
           m.reactivation_amt * m.to_reporting AS reactivation
    FROM moves m JOIN cohort_member c
      ON c.customer = m.customer AND c.currency = m.currency
     AND c.member_from < m.counted_until AND c.member_until > m.day
), churn_islands AS (
    -- a customer churned in the last 30 days on the days [churn, churn + 30); merged so that
    -- two churns within 30 days count the customer once
    SELECT customer, currency, min(day) AS from_day, max(day) + 30 AS until
    FROM (SELECT customer, currency, day,
                 count(*) FILTER (WHERE starts) OVER (PARTITION BY customer, currency ORDER BY day)
                   AS island
          FROM (SELECT customer, currency, day,
                       coalesce(day >= lag(day) OVER (PARTITION BY customer, currency ORDER BY day) + 30,
                                true) AS starts
                FROM st_moves WHERE churn_amt > 0) churns) numbered
    GROUP BY customer, currency, island
), churned_pieces AS (
    SELECT greatest(i.from_day, c.member_from) AS from_day, least(i.until, c.member_until) AS until
    FROM churn_islands i JOIN cohort_member c
      ON c.customer = i.customer AND c.currency = i.currency
     AND c.member_from < i.until AND c.member_until > i.from_day
), cohort_edges AS (
    SELECT from_day AS day, churn, contraction, expansion, reactivation, 0 AS churned FROM move_pieces
    UNION ALL
    SELECT until, -churn, -contraction, -expansion, -reactivation, 0 FROM move_pieces
    UNION ALL
    SELECT from_day, 0, 0, 0, 0, 1 FROM churned_pieces
    UNION ALL
    SELECT until, 0, 0, 0, 0, -1 FROM churned_pieces
), cohort AS (
    SELECT t.day,
           sum(sum(e.churn)) OVER w AS cohort_churn,
           sum(sum(e.contraction)) OVER w AS cohort_contraction,
           sum(sum(e.expansion)) OVER w AS cohort_expansion,
           sum(sum(e.reactivation)) OVER w AS cohort_reactivation,
           (sum(sum(e.churned)) OVER w)::bigint AS cohort_churned
    FROM (SELECT DISTINCT day FROM st_currency_days) t
    LEFT JOIN cohort_edges e ON e.day = t.day
    GROUP BY t.day
    WINDOW w AS (ORDER BY t.day)
)
SELECT t.day, t.mrr,
       coalesce(m.new_mrr, 0) AS new_mrr,
       coalesce(m.expansion_mrr, 0) AS expansion_mrr,
       coalesce(m.contraction_mrr, 0) AS contraction_mrr,
       coalesce(m.churned_mrr, 0) AS churned_mrr,
       coalesce(m.reactivation_mrr, 0) AS reactivation_mrr,
       fx.fx_adjustment_mrr,
       t.active_customers,
       coalesce(m.new_customers, 0) AS new_customers,
       coalesce(m.churned_customers, 0) AS churned_customers,
       coalesce(before.active_customers, 0) AS cohort_customers,
       coalesce(c.cohort_churned, 0) AS cohort_churned,
       before.mrr AS cohort_mrr,
       c.cohort_churn, c.cohort_contraction, c.cohort_expansion, c.cohort_reactivation
FROM totals t
LEFT JOIN daily_moves m USING (day)
LEFT JOIN fx USING (day)
LEFT JOIN cohort c USING (day)
LEFT JOIN totals before ON before.day = t.day - 30
ORDER BY t.day
"""

_MONEY_DAILY = """
SELECT m.metric, m.day, sum(m.amount * r.to_reporting) AS value
FROM st_money m JOIN st_rates r USING (currency, day)
GROUP BY m.metric, m.day ORDER BY m.metric, m.day
"""


_CREATED_TABLE = re.compile(r"^CREATE TEMP TABLE (st_\w+)", re.MULTILINE)


@dataclass(frozen=True)
class MetricsScope:
    workspace_id: str
    reporting_currency: str
    timezone: str
    today: date
    # When the landed subscriptions were true, in the provider's clock (epoch seconds): the
    # newest event at the start of the sync.
    observed_at: int
    # When this sync started landing (the warehouse's clock): what it wrote is what it saw.
    landed_since: datetime


# One row of the computation: a day's MRR, movements, counts and cohort figures (the daily
# query), or one money metric of a day ({"day": ..., "revenue": ...}).
MetricsRow = Mapping[str, Any]


def compute_stripe_metrics(db: Connection, scope: MetricsScope) -> Iterator[MetricsRow]:
    """Run the whole computation in the caller's tenant transaction; yield every row of its
    results (`metric_points` turns one into its points)."""
    params: dict[str, Any] = {
        "observed": scope.observed_at,
        "landed_since": scope.landed_since,
        "tz": scope.timezone,
        "today": scope.today,
        "reporting": scope.reporting_currency,
        "zero_decimal": list(ZERO_DECIMAL),
        "three_decimal": list(THREE_DECIMAL),
    }
    raw = db.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor:
        # The sorts and hashes over the temporary tables spill to disk at the default 4 MB.
        cursor.execute("SET LOCAL work_mem = '64MB'")
        # A cache of a function over each record's own JSON (jsonb_array_elements of its
        # lines) never hits, and hashes every document to find that out.
        cursor.execute("SET LOCAL enable_memoize = off")
        # The ANALYZE of each temporary table below is for its size and its keys' spread; a
        # sample of 3,000 rows tells both, where the default 30,000 took a tenth of the run.
        cursor.execute("SET LOCAL default_statistics_target = 10")
        for block in (
            _SNAPSHOT,
            _PRICES,
            _LINES,
            _OBSERVED,
            _DISCOUNTS,
            _ITEM_SPANS,
            _ITEM_STATES,
            _SPELLS,
            _SUB_VALUES,
            _LEVELS,
            _MONEY,
            _RATES,
        ):
            for statement in filter(None, (part.strip() for part in block.split(";\n"))):
                cursor.execute(statement, params if "%(" in statement else None)
                # Statistics of each temporary table, so that joins over it are planned
                # from its real size (a table just created has none: nested loops).
                if created := _CREATED_TABLE.search(statement):
                    cursor.execute(f"ANALYZE {created[1]}")
        cursor.execute(
            "SELECT currency, day FROM st_rates WHERE rate IS NULL ORDER BY day, currency LIMIT 5"
        )
        missing = cursor.fetchall()
        if missing:
            listed = ", ".join(f"{c} on {d}" for c, d in missing)
            raise MissingFxRate(
                f"no exchange rate to {scope.reporting_currency} for {listed}; import rates with"
                " `kpi-pipelines fx import` (day,base,quote,rate)"
            )
        cursor.execute(_DAILY, params)
        columns = [c.name for c in cursor.description]
        for values in cursor:
            yield dict(zip(columns, values, strict=True))
        cursor.execute(_MONEY_DAILY, params)
        for metric, day, value in cursor.fetchall():
            yield {"day": day, metric: value}


def metric_points(scope: MetricsScope, row: MetricsRow) -> list[KPIData]:
    """The points of one row of `compute_stripe_metrics`."""
    if "mrr" in row:
        return list(_daily_points(scope, row))
    day = row["day"]
    return [
        _point(scope, metric, day, float(value)) for metric, value in row.items() if metric != "day"
    ]


def _point(scope: MetricsScope, metric: str, day: date, value: float, **metadata: Any) -> KPIData:
    meta: dict[str, Any] = {"granularity": "day", **metadata}
    if metric in MONEY_METRICS:
        meta["currency"] = scope.reporting_currency
    return KPIData(
        value=round(value, 6),
        timestamp=day_timestamp(day),
        metadata=meta,
        source=SOURCE,
        workspace_id=scope.workspace_id,
        metric=metric,
    )


def _daily_points(scope: MetricsScope, row: MetricsRow) -> Iterator[KPIData]:
    day = row["day"]
    for metric in MRR_METRICS:
        yield _point(scope, metric, day, float(row[metric] or 0))
    for metric in ("active_customers", "new_customers", "churned_customers"):
        yield _point(scope, metric, day, float(row[metric]))
    if row["active_customers"]:
        yield _point(scope, "arpa", day, float(row["mrr"]) / row["active_customers"])
    if row["cohort_customers"]:
        yield _point(
            scope, "customer_churn_rate", day, row["cohort_churned"] / row["cohort_customers"]
        )
    cohort_mrr = float(row["cohort_mrr"] or 0)
    if cohort_mrr > 0:
        churn = float(row["cohort_churn"] or 0)
        contraction = float(row["cohort_contraction"] or 0)
        expansion = float(row["cohort_expansion"] or 0)
        reactivation = float(row["cohort_reactivation"] or 0)
        yield _point(scope, "revenue_churn_rate", day, (churn + contraction) / cohort_mrr)
        yield _point(
            scope,
            "net_revenue_retention",
            day,
            (cohort_mrr + expansion + reactivation - contraction - churn) / cohort_mrr,
        )


def reporting_today(now: datetime, timezone: str) -> date:
    from zoneinfo import ZoneInfo

    return now.astimezone(ZoneInfo(timezone)).date()


__all__ = [
    "METRICS",
    "MetricsRow",
    "MetricsScope",
    "MissingFxRate",
    "compute_stripe_metrics",
    "metric_points",
    "reporting_today",
]
