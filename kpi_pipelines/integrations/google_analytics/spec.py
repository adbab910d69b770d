"""Google Analytics 4, declared: daily web traffic and conversions, synced hourly."""

from datetime import timedelta

from kpi_pipelines.integrations.google_analytics.adapter import PROVIDER, GoogleAnalyticsAdapter
from kpi_pipelines.integrations.google_analytics.types import GA4ConnectionSettings
from kpi_pipelines.integrations.shared.oauth import GOOGLE_CLIENT_VARIABLES
from kpi_pipelines.integrations.shared.spec import (
    AuthKind,
    Cadence,
    ProviderRunConfig,
    ProviderSpec,
    SecretSpec,
)


class GoogleAnalyticsSyncConfig(ProviderRunConfig):
    """Leave everything unset for the incremental sync; set dates to re-sync a range."""

    # Re-sync from this day (YYYY-MM-DD, the property's time zone). Default: the cursor
    # minus the connection's lookback_days, or history_days back on the first sync.
    start_date: str | None = None
    # Last day to read (YYYY-MM-DD); default and latest: today in the property's time zone.
    end_date: str | None = None
    # Days a first sync reads; default: the resource's history_days (90).
    history_days: int | None = None


SPEC = ProviderSpec(
    key=PROVIDER,
    display_name="Google Analytics 4",
    description=(
        "Daily sessions, total_users, new_users, engaged_sessions, conversions (GA4 key"
        " events) and engagement_rate from the GA4 Data API, per session default channel"
        " group and in total (a report by date alone: users are not additive). Days are the"
        " property's own. Each sync re-reads the last lookback_days (GA4 restates 24-48 h);"
        " set start_date in the run config to re-sync a range."
    ),
    adapter=GoogleAnalyticsAdapter,
    auth=AuthKind.OAUTH2_REFRESH,
    settings=GA4ConnectionSettings,
    secrets=(
        SecretSpec("refresh_token", "the workspace's grant (scope analytics.readonly)"),
        SecretSpec(
            "client_id",
            "the OAuth client, when the workspace uses its own",
            operator_variable=GOOGLE_CLIENT_VARIABLES["client_id"],
        ),
        SecretSpec(
            "client_secret",
            "the OAuth client's secret, when the workspace uses its own",
            operator_variable=GOOGLE_CLIENT_VARIABLES["client_secret"],
        ),
    ),
    # A quarter past: GA4 has processed most of the previous hour by then.
    cadence=Cadence.every_hours(1, minute=15),
    lookback=timedelta(days=3),
    pool_limit=2,  # 10 concurrent requests per property, 14,000 tokens per project-hour
    group="web_analytics",
    kinds=frozenset({"googleanalytics"}),
    tags={"kpi/domain": "marketing"},
    metrics=(
        "sessions",
        "total_users",
        "new_users",
        "engaged_sessions",
        "conversions",
        "engagement_rate",
    ),
    run_config=GoogleAnalyticsSyncConfig,
    demo="kpi_pipelines.sandbox.google.demo:prepare_analytics",
)
