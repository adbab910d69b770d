"""Stripe, declared: revenue, MRR and churn, synced on webhook events and reconciled daily."""

from kpi_pipelines.integrations.shared.spec import AuthKind, Cadence, ProviderSpec, SecretSpec
from kpi_pipelines.integrations.stripe.adapter import PROVIDER, StripeAdapter
from kpi_pipelines.integrations.stripe.types import StripeConnectionSettings
from kpi_pipelines.integrations.stripe.webhooks.sensor import webhook_inbox_sensor

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
    metrics=(
        "mrr",
        "new_mrr",
        "expansion_mrr",
        "contraction_mrr",
        "churned_mrr",
        "reactivation_mrr",
        "fx_adjustment_mrr",
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
    ),
    sensors=(webhook_inbox_sensor,),
    webhooks="kpi_pipelines.integrations.stripe.webhooks.app:routes",
    demo="kpi_pipelines.sandbox.stripe.demo:prepare",
)
