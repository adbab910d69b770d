"""The google_analytics asset, its job and its hourly schedule (one run per workspace)."""

import dagster as dg

from kpi_pipelines.assets.provider_asset import ProviderRunConfig, build_provider_asset
from kpi_pipelines.automation.cadence import build_provider_schedule


class GoogleAnalyticsSyncConfig(ProviderRunConfig):
    """Leave everything unset for the incremental sync; set dates to re-sync a range."""

    # Re-sync from this day (YYYY-MM-DD, the property's time zone). Default: the cursor
    # minus the connection's lookback_days, or history_days back on the first sync.
    start_date: str | None = None
    # Last day to read (YYYY-MM-DD); default and latest: today in the property's time zone.
    end_date: str | None = None
    # Days a first sync reads; default: the resource's history_days (90).
    history_days: int | None = None


google_analytics_kpis = build_provider_asset(
    provider="google_analytics",
    resource_key="google_analytics",
    description=(
        "Daily sessions, total_users, new_users, engaged_sessions, conversions (GA4 key"
        " events) and engagement_rate from the GA4 Data API, per session default channel"
        " group and in total (a report by date alone: users are not additive). Days are the"
        " property's own. Each sync re-reads the last lookback_days (GA4 restates 24-48 h);"
        " set start_date in the run config to re-sync a range."
    ),
    group_name="web_analytics",
    kinds={"googleanalytics"},
    config_class=GoogleAnalyticsSyncConfig,
    pool="google_analytics",
)

google_analytics_job = dg.define_asset_job(
    "google_analytics_job",
    selection=dg.AssetSelection.assets(google_analytics_kpis),
    description="Sync Google Analytics 4 for one workspace.",
)

google_analytics_schedule = build_provider_schedule(
    provider="google_analytics",
    job=google_analytics_job,
    # A quarter past: GA4 has processed most of the previous hour by then.
    cron_schedule="15 * * * *",
    description="Hourly GA4 sync for every workspace with a google_analytics connection.",
)
