"""The one Definitions object: every provider's assets, resources, schedules and sensors."""

import dagster as dg

from kpi_pipelines.assets.provider_asset import kpi_asset_key
from kpi_pipelines.automation.cadence import build_freshness_check, build_provider_schedule
from kpi_pipelines.automation.partitions import workspace_partitions_sensor
from kpi_pipelines.integrations.csv_upload.adapter import CsvUploadAdapter
from kpi_pipelines.integrations.csv_upload.assets import csv_upload_job, csv_upload_kpis
from kpi_pipelines.integrations.csv_upload.drop_folder import csv_drop_folder_sensor
from kpi_pipelines.integrations.google_analytics.adapter import GoogleAnalyticsAdapter
from kpi_pipelines.integrations.google_analytics.assets import (
    google_analytics_job,
    google_analytics_kpis,
    google_analytics_schedule,
)
from kpi_pipelines.integrations.google_sheets.adapter import GoogleSheetsAdapter
from kpi_pipelines.integrations.google_sheets.assets import google_sheets_job, google_sheets_kpis
from kpi_pipelines.integrations.shared.base_adapter import IntegrationAdapter
from kpi_pipelines.integrations.stripe.adapter import StripeAdapter
from kpi_pipelines.integrations.stripe.assets import stripe_job, stripe_kpis
from kpi_pipelines.resources import WarehouseResource
from kpi_pipelines.webhooks.sensor import stripe_webhook_sensor

ASSETS = [csv_upload_kpis, stripe_kpis, google_analytics_kpis, google_sheets_kpis]

RESOURCES = {
    "warehouse": WarehouseResource(),
    "csv_upload": CsvUploadAdapter(),
    "stripe": StripeAdapter(),
    "google_analytics": GoogleAnalyticsAdapter(),
    "google_sheets": GoogleSheetsAdapter(),
}

SCHEDULES = [
    # Webhooks trigger Stripe syncs as events arrive; this daily pass re-lists every object
    # and lands what differs, catching lost events and changes that send none.
    build_provider_schedule(
        provider="stripe",
        job=stripe_job,
        cron_schedule="0 3 * * *",
        description="Daily Stripe reconciliation for every connected workspace.",
        run_options={"reconcile": True},
    ),
    google_analytics_schedule,
]

FRESHNESS_CHECKS = [
    build_freshness_check(provider=p, asset_key=kpi_asset_key(p), cadence=type(r).cadence)
    for p, r in RESOURCES.items()
    if isinstance(r, IntegrationAdapter)
]

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=FRESHNESS_CHECKS,
    jobs=[csv_upload_job, stripe_job, google_analytics_job, google_sheets_job],
    schedules=SCHEDULES,
    sensors=[workspace_partitions_sensor, csv_drop_folder_sensor, stripe_webhook_sensor],
    resources=RESOURCES,
)
