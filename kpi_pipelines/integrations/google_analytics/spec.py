"""Google Analytics 4, declared: daily web traffic and conversions, synced hourly."""

from kpi_pipelines.integrations.google_analytics.adapter import (
    CHANNEL_DIMENSION,
    GA4_METRICS,
    PROVIDER,
    SCOPE,
    GoogleAnalyticsAdapter,
)
from kpi_pipelines.integrations.google_analytics.types import GA4ConnectionSettings
from kpi_pipelines.integrations.shared.engines.report import Report, ReportEngine, ReportRunConfig
from kpi_pipelines.integrations.shared.oauth import google_oauth, google_secrets
from kpi_pipelines.integrations.shared.spec import AuthKind, Cadence, ProviderSpec

# GA4 metrics every report asks for (their order is the order of each row's values).
METRICS = tuple(GA4_METRICS)
# GA4 restates the last 24-48 hours: each sync reads the last 3 days again (a connection's
# lookback_days setting may say otherwise).
LOOKBACK_DAYS = 3
BY_DATE_CHANNEL = Report(
    "by_date_channel", ("date", CHANNEL_DIMENSION), METRICS, lookback_days=LOOKBACK_DAYS
)
# The totals: users do not add up over channels.
BY_DATE = Report("by_date", ("date",), METRICS, lookback_days=LOOKBACK_DAYS)


SPEC = ProviderSpec(
    key=PROVIDER,
    display_name="Google Analytics 4",
    description=(
        "Daily sessions, total_users, new_users, engaged_sessions, conversions (GA4 key"
        " events) and engagement_rate from the GA4 Data API, per session default channel"
        " group and in total (a report by date alone: users are not additive). Days are the"
        " property's own. Each sync re-reads the last 3 days (GA4 restates 24-48 h; a"
        " connection's lookback_days may say otherwise);"
        " set start_date in the run config to re-sync a range."
    ),
    adapter=GoogleAnalyticsAdapter,
    auth=AuthKind.OAUTH2_REFRESH,
    settings=GA4ConnectionSettings,
    secrets=google_secrets("scope analytics.readonly"),
    oauth=google_oauth(SCOPE),
    # A quarter past: GA4 has processed most of the previous hour by then.
    cadence=Cadence.every_hours(1, minute=15),
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
    engine=ReportEngine(reports=(BY_DATE_CHANNEL, BY_DATE)),
    run_config=ReportRunConfig,
    demo="kpi_pipelines.sandbox.google.demo:prepare_analytics",
)
