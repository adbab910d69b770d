"""Stripe, declared: revenue, MRR and churn, synced on webhook events and reconciled daily."""

from kpi_pipelines.integrations.shared.engines.objects import ObjectEngine, Stream
from kpi_pipelines.integrations.shared.spec import AuthKind, Cadence, ProviderSpec, SecretSpec
from kpi_pipelines.integrations.stripe import types as st
from kpi_pipelines.integrations.stripe.adapter import (
    EVENT_RETENTION,
    PROVIDER,
    SUBSCRIPTION_EVENT_TYPES,
    SUBSCRIPTION_EVENTS,
    UNEVENTFUL_STREAM,
    StripeAdapter,
)
from kpi_pipelines.integrations.stripe.metrics import METRICS
from kpi_pipelines.integrations.stripe.types import StripeConnectionSettings
from kpi_pipelines.integrations.stripe.webhooks.sensor import webhook_inbox_sensor

# Listed in this order on a full read; expansions bring what metrics need in one request.
STREAMS = (
    Stream("customers", "/v1/customers", st.Customer),
    Stream("products", "/v1/products", st.StripeObject),
    # tiers, currency_options and applies_to are includable: Stripe sends them only expanded
    Stream(
        "prices", "/v1/prices", st.Price, (("expand", ("data.tiers", "data.currency_options")),)
    ),
    Stream(
        "coupons",
        "/v1/coupons",
        st.Coupon,
        (("expand", ("data.applies_to", "data.currency_options")),),
    ),
    Stream(
        "subscriptions",
        "/v1/subscriptions",
        st.Subscription,
        (("status", "all"), ("expand", ("data.discounts", "data.items.data.discounts"))),
    ),
    Stream("invoices", "/v1/invoices", st.Invoice, (("expand", ("data.discounts",)),)),
    Stream("charges", "/v1/charges", st.Charge),
    Stream("refunds", "/v1/refunds", st.Refund),
    Stream(UNEVENTFUL_STREAM, "/v1/balance_transactions", st.BalanceTransaction),
    # What each subscription was before and after every change of the last 30 days (the
    # metrics date changes by them); incremental syncs land them as they read the events.
    Stream(
        SUBSCRIPTION_EVENTS,
        "/v1/events",
        st.SubscriptionEvent,
        (("types", SUBSCRIPTION_EVENT_TYPES),),
        retention_seconds=int(EVENT_RETENTION.total_seconds()),
    ),
)

SPEC = ProviderSpec(
    key=PROVIDER,
    display_name="Stripe",
    description=(
        "Revenue, MRR, its movements, customers, churn and retention from Stripe. The first"
        " run reads everything; webhook-triggered runs read /v1/events since their cursor and"
        " re-fetch the objects that changed; the daily run reconciles every object with its"
        " landed copy. Metrics are computed in SQL over the landed objects."
    ),
    adapter=StripeAdapter,
    auth=AuthKind.API_KEY,
    settings=StripeConnectionSettings,
    secrets=(
        SecretSpec("api_key", "a restricted key with read access (customers to events)"),
        SecretSpec("webhook_secret", "the webhook endpoint's signing secret (whsec_...)"),
    ),
    # Webhooks trigger the other runs; this one catches what they and the events list missed.
    cadence=Cadence.daily(hour=3, why="reconciles what webhooks missed", reconcile=True),
    pool_limit=4,  # Stripe allows 100 requests a second per account (25 in test mode)
    group="revenue",
    kinds=frozenset({"stripe"}),
    tags={"kpi/domain": "revenue"},
    metrics=METRICS,
    # snapshots at each day's end; revenue and the MRR movements are a day's flow
    levels=("mrr", "active_customers", "arpa"),
    # Three lists at once: against Stripe's ~0.3 s a page that is ~10 requests a second,
    # within test mode's 25 (live: 100); a 429 is retried with backoff.
    engine=ObjectEngine(streams=STREAMS, cursor_stream="events", concurrent_lists=3),
    sensors=(webhook_inbox_sensor,),
    webhooks="kpi_pipelines.integrations.stripe.webhooks.app:routes",
    demo="kpi_pipelines.sandbox.stripe.demo:prepare",
)
