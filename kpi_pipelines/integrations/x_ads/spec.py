"""X Ads, declared: daily ad metrics per campaign and for the account, synced every 6 hours."""

from kpi_pipelines.integrations.shared.ad_metrics import AD_METRICS, ad_campaigns, ad_platform
from kpi_pipelines.integrations.shared.engines.report import Report, ReportJobs
from kpi_pipelines.integrations.shared.oauth1 import oauth1_secrets
from kpi_pipelines.integrations.shared.spec import AuthKind, Cadence, ProviderSpec
from kpi_pipelines.integrations.x_ads.adapter import APP_VARIABLES, PROVIDER, XAdsAdapter
from kpi_pipelines.integrations.x_ads.types import XAdsConnectionSettings, XCampaign

CAMPAIGNS = ad_campaigns(XCampaign, status="entity_status")
# One row per day (its campaigns merged: the account's day is their sum). A window of at
# most 7 days is read synchronously, a longer one as async jobs (up to 90 days); either way
# at most 20 campaigns at once. X settles billing and web conversions within 3 days.
STATS = Report(
    "stats",
    ("day", "campaign_id"),
    AD_METRICS,
    lookback_days=3,
    max_days=90,
    ids_from="campaigns",
    max_ids=20,
    row_key=("day",),
    jobs=ReportJobs(in_flight=5, sync_days=7),
)

SPEC = ProviderSpec(
    key=PROVIDER,
    display_name="X Ads",
    description=(
        "Daily ad_spend, impressions, clicks, conversions and conversion_value, and ctr,"
        " cpc, cpm and roas from their summed parts, per campaign and for the account (the"
        " sum of its campaigns, deleted ones included), from the X Ads API v12 stats, in the"
        " account's time zone. Conversions are the web conversion events the connection"
        " names (purchases by default) with their sale amount; money in the workspace's"
        " reporting currency at the day's rate. Each sync re-reads the last lookback_days"
        " (3: X settles billing within 3 days); set start_date in the run config to re-sync"
        " a range."
    ),
    adapter=XAdsAdapter,
    auth=AuthKind.OAUTH1,
    settings=XAdsConnectionSettings,
    secrets=oauth1_secrets(APP_VARIABLES),
    cadence=Cadence.every_hours(6, minute=20),
    # X's limits are per user token (250 synchronous stats requests per 15 minutes) and per
    # ads account (100 async jobs processing at once), not per app: workspaces with their
    # own tokens do not share them. The pool bounds the X syncs one deployment runs at once
    # (each waits out its own token's window), so a fleet's first syncs, 90 days of jobs
    # each, do not all poll at once.
    pool_limit=4,
    **ad_platform("x", reports=(STATS,), campaigns=CAMPAIGNS),
    demo="kpi_pipelines.sandbox.x.demo:prepare",
)
