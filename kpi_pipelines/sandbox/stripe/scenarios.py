"""Scripted Stripe businesses: customers that follow an explicit script, not the random mix.

    sandbox = StripeSandbox.scripted(                    # or ScriptedSandbox(...)
        [
            CustomerScript(subscriptions=[
                SubscriptionScript(
                    price=PriceSpec(unit_amount=120_000, interval="year"),
                    coupon=CouponSpec(percent_off=20, duration="forever"),
                ),
            ]),
            CustomerScript(tax=20.0, subscriptions=[  # 20% VAT on top of its invoices
                SubscriptionScript(
                    price=PriceSpec(5_000), trial_days=14,
                    events=[PaymentFails(45), MarkUnpaid(52)],  # or ("past_due", 45), ...
                ),
            ]),
        ],
        start=datetime(2026, 1, 1, tzinfo=UTC), now=datetime(2026, 5, 1, tzinfo=UTC),
    )

The scripted customers are simulated with the generator's own building blocks (subscriptions,
items, invoices with a line per item and billing period, proration lines on a change,
discounts, tax, charges, balance transactions, status timelines and events), so the sandbox
serves them through the same app, under the same contract, and `sandbox.truth` knows them.

Times (a customer's `created`, a subscription's `start`, an event's `at`) are days after the
sandbox start (fractions allowed) or aware datetimes. Amounts are minor units of the
customer's currency. Nothing random happens: no refunds, one-off charges or email changes.

A subscription starts at `start` (default: when its customer is created), with a zero trial
invoice and its first real invoice at the trial's end if `trial_days`, else its first invoice
at once; every billing period then opens with a renewal invoice, paid a minute after it is
finalized unless the script makes the payment fail. Events, in time order:

- `Change(at, price=None, quantity=None, item=0)`: an item's new price and/or quantity,
  prorated (a credit line for the unused time and a line for the remaining time, on one
  invoice paid at once); a price of another interval restarts the billing cycle at `at` (the
  subscription must then have that one item). `AddItem(at, price, quantity)` and
  `RemoveItem(at, item)` prorate the same way. Not at a period start (the renewal invoice
  is created at that very instant).
- `AddCoupon(at, coupon)`: a discount from `at` on.
- `Cancel(at, at_period_end=False)`: ends at `at`, or at the end of the current period (it
  counts until then). Nothing may follow it.
- `PaymentFails(at)`: the renewal invoice of the period containing `at` is not paid: its
  first attempt fails at `at` (at the earliest a minute after finalization) and the
  subscription is `past_due`. Then `MarkUnpaid(at)`: the invoice is marked uncollectible and
  the subscription is `unpaid`; `PaymentSucceeds(at)`: the invoice is paid, `active` again;
  or `Cancel`. A failure still unresolved at the end of its period ends the script (the
  subscription stays `past_due` or `unpaid`, no further renewals).

Billing settings (see the tests test_billing_statuses.py, test_prorations.py,
test_discounts.py, test_taxes.py, test_pause_collection.py, test_billing_anchor.py and
test_schedules.py for worked accounts; the random business mixes them in with
StripeSandboxConfig(billing_variety=True), variety.py):

- `SubscriptionScript(first_payment_fails=True)`: the first invoice's payment fails at
  creation: status `incomplete` (not counted); a `PaymentSucceeds(at)` within 23 hours pays it
  (`active` a second later), else at 23 hours the invoice is voided (`invoice.voided`) and the
  subscription is `incomplete_expired`.
- `RetriesExhausted(at, subscription, invoice="open")`, after a `PaymentFails`: the last retry
  fails at `at`; two seconds later the settings' outcome: `subscription` "canceled" (ended,
  reason payment_failed), "unpaid" or "past_due" (left as it is), and `invoice` "open" (left
  past due) or "uncollectible" (marked). A `PaymentSucceeds` may still pay it in its period.
- `SubscriptionScript(trial_days=14, missing_payment_method="pause")`: no payment method when
  the trial ends: `paused` (customer.subscription.paused, no invoice, not counted) until
  `Resume(at)` (customer.subscription.resumed; billing_cycle_anchor = at, a new invoice) or a
  `Cancel(at)`; "cancel" ends the subscription at the trial's end.
- `proration_behavior` on `Change`, `AddItem` and `RemoveItem`: "always_invoice" (the
  default here, as before), "create_prorations" (Stripe's API default: the proration lines are
  pending invoice items, served at /v1/invoiceitems and billed first on the next invoice) or
  "none" (no proration lines). The items change at `at` in every case; a change of interval is
  invoiced at once.
- `ItemScript(price, quantity, coupon=CouponSpec(...))` and `AddCoupon(at, coupon, item=i)`: a
  discount on one subscription item (its `discounts`); `SubscriptionScript(coupons=(...))`:
  more subscription discounts. Discounts apply one after the other (items' own first, then
  the subscription's in the order added), each to what the ones before left.
- `CustomerScript(balance=-7000)`: a credit balance the next invoices use up.
- `PriceSpec(12000, tax_behavior="inclusive")` with `CustomerScript(tax=20.0)`: the tax is
  inside the amount (line `taxes[]` inclusive: amount 2000, taxable_amount 10000; total =
  subtotal = 12000, total_excluding_tax 10000); MRR counts it net of the tax ($100).
  `SubscriptionScript(default_tax_rates=[TaxRateSpec(20, inclusive=True)])` and
  `ItemScript(price, tax_rates=[TaxRateSpec(10)])`: manual tax rates (TaxRate objects embedded
  in the subscription / item; the item's own replaces the subscription's), inclusive or not as
  the rate says; a customer has either these or its automatic `tax`.
- `Change(at, ..., billing_cycle_anchor="now")`: a new billing period from `at` (price and
  quantity may stay), the unused time credited unless proration_behavior "none", every item
  charged a whole new period on an invoice at once; renewals follow the new anchor.
- `SubscriptionScript(price=A, phases=[Phase(15.5, price=B, quantity=2), Phase(45, price=C)])`:
  a subscription schedule (`schedule: "sub_sched_..."`, served at /v1/subscription_schedules
  with phases, current_phase, status): the script's items are phase 0; at each phase's start
  its first item changes (customer.subscription.updated with the old items,
  subscription_schedule.updated), prorated per the phase's proration_behavior (default
  create_prorations); released (subscription_schedule.released, schedule null) one billing
  period after the last phase starts. Phases start inside a billing period, not at its start.
- `PauseCollection(at, behavior="void"|"keep_as_draft"|"mark_uncollectible", resumes_at=None)`
  and `ResumeCollection(at)`: Stripe's pause_collection ({behavior, resumes_at}, null when
  cleared; customer.subscription.updated each time, and at resumes_at when Stripe clears it).
  The subscription stays `active` and counts; each invoice created meanwhile is voided at
  once, left a draft (auto_advance false, no number) or marked uncollectible at once, never
  charged, without using the credit balance.
- `DraftRenewal(at)`: the renewal invoice of the period containing `at` stays a draft (the
  integration sets auto_advance false a minute after invoice.created: invoice.updated); no
  number, no payment; the subscription stays `active`.
- `InvoiceCoupon(at, coupon)`: a coupon on the next renewal invoice only (the discount's
  `invoice` is that invoice, its `subscription` null), whatever the coupon's duration.

What a price or coupon bills (see PriceSpec and CouponSpec):

- `PriceSpec(3000, transform_quantity=(10, "up"))`: packages of 10 seats, rounded up ($90 at
  25 seats); `PriceSpec("0.5")` or tiers with str unit amounts: unit_amount_decimal, each
  invoice line rounded to the minor unit (half up).
- `PriceSpec(4000, currency="eur", currency_options=(("usd", 5000),))`: a multi-currency
  price; a USD subscription bills $50. Tiered prices take tiers per option. Served with
  `currency_options` (and `currency_options.<cur>.tiers`) only when expanded.
- `CouponSpec(amount_off=500, currency="eur", currency_options=(("usd", 600),))`: an amount
  off per currency; `CouponSpec(percent_off=50, applies_to=("seats",))`: limited to the items
  of those products (`applies_to` served when expanded).

Events may also be written as tuples: `("past_due", at)`, `("unpaid", at)`, `("paid", at)`,
`("cancel", at)`, `("cancel_at_period_end", at)`, `("upgrade"|"downgrade"|"change", at,
PriceSpec | quantity | (PriceSpec, quantity))`, `("quantity", at, n)`, `("coupon", at,
CouponSpec[, item])`, `("add_item", at, PriceSpec[, quantity])`, `("remove_item", at, item)`,
`("retries_exhausted", at, subscription[, invoice])`, `("resume", at)`,
`("pause_collection", at[, behavior[, resumes_at]])`, `("resume_collection", at)`,
`("draft_renewal", at)`, `("invoice_coupon", at, CouponSpec)`.

The script vocabulary is in scripts.py, the generator that follows it in scripted.py, and
`ScriptedSandbox` beside `StripeSandbox` in sandbox.py; this module gathers them.
"""

from kpi_pipelines.sandbox.stripe.catalog import Tier
from kpi_pipelines.sandbox.stripe.sandbox import ScriptedSandbox
from kpi_pipelines.sandbox.stripe.scripted import ScriptedGenerator
from kpi_pipelines.sandbox.stripe.scripts import (
    AddCoupon,
    AddItem,
    Cancel,
    Change,
    CouponSpec,
    CustomerScript,
    DraftRenewal,
    Event,
    InvoiceCoupon,
    ItemScript,
    MarkUnpaid,
    PauseCollection,
    PaymentFails,
    PaymentSucceeds,
    Phase,
    PriceSpec,
    RemoveItem,
    Resume,
    ResumeCollection,
    RetriesExhausted,
    SubscriptionScript,
    TaxRateSpec,
    as_event,
)

__all__ = [
    "AddCoupon",
    "AddItem",
    "Cancel",
    "Change",
    "CouponSpec",
    "CustomerScript",
    "DraftRenewal",
    "Event",
    "InvoiceCoupon",
    "ItemScript",
    "MarkUnpaid",
    "PauseCollection",
    "PaymentFails",
    "PaymentSucceeds",
    "Phase",
    "PriceSpec",
    "RemoveItem",
    "Resume",
    "ResumeCollection",
    "RetriesExhausted",
    "ScriptedGenerator",
    "ScriptedSandbox",
    "SubscriptionScript",
    "TaxRateSpec",
    "Tier",
    "as_event",
]
