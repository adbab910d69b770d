"""The Stripe asset and its job: one workspace partition per run."""

import dagster as dg

from kpi_pipelines.assets.provider_asset import build_provider_asset

stripe_kpis = build_provider_asset(
    provider="stripe",
    resource_key="stripe",
    description=(
        "Revenue, MRR, its movements, customers, churn and retention from Stripe. The first"
        " run reads everything; later runs read /v1/events since their cursor and re-fetch the"
        " objects that changed. Metrics are computed in SQL over the landed objects."
    ),
    group_name="revenue",
    kinds={"stripe"},
    pool="stripe",
)

stripe_job = dg.define_asset_job(
    "stripe_job",
    selection=dg.AssetSelection.assets(stripe_kpis),
    description="Sync Stripe for one workspace (webhook-triggered, and a daily reconciliation).",
)
