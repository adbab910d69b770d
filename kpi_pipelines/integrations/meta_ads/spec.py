"""Meta Ads, declared: daily ad metrics per campaign and for the ad account, every 4 hours."""

from kpi_pipelines.integrations.meta_ads.adapter import PROVIDER, MetaAdsAdapter
from kpi_pipelines.integrations.meta_ads.types import MetaAdsSettings, MetaCampaign
from kpi_pipelines.integrations.shared.ad_metrics import ad_campaigns, ad_platform
from kpi_pipelines.integrations.shared.engines.report import Report, ReportJobs
from kpi_pipelines.integrations.shared.spec import AuthKind, Cadence, ProviderSpec, SecretSpec

# Insights fields every report asks for; rows carry their day (date_start) themselves.
METRICS = ("spend", "impressions", "clicks", "actions", "action_values")
# Meta's attribution keeps changing a day's conversions for 28 days ("Insights ... do not
# change after 28 days of being reported"): every sync reads them again.
LOOKBACK_DAYS = 28
# Report runs, one at a time per sync; a run that fails or is skipped is split by days.
JOBS = ReportJobs(in_flight=1, min_days=1)
BY_CAMPAIGN = Report(
    "by_campaign_day", ("date", "campaign_id"), METRICS, lookback_days=LOOKBACK_DAYS, jobs=JOBS
)
BY_DAY = Report(
    "by_day", ("date",), METRICS, lookback_days=LOOKBACK_DAYS, jobs=JOBS
)  # the account's
CAMPAIGNS = ad_campaigns(MetaCampaign)

SPEC = ProviderSpec(
    key=PROVIDER,
    display_name="Meta Ads",
    description=(
        "Daily ad_spend, impressions, clicks, conversions, conversion_value, ctr, cpc, cpm and"
        " roas from the Marketing API's insights, per campaign and for the ad account (Meta's"
        " own account-level rows), in the account's time zone. Conversions are the"
        " connection's action types, the first present in a row (default omni_purchase, else"
        " purchase). Each sync re-reads the last 28 days (Meta's attribution restates them);"
        " set start_date in the run config to re-sync a range."
    ),
    adapter=MetaAdsAdapter,
    auth=AuthKind.ACCESS_TOKEN,
    settings=MetaAdsSettings,
    secrets=(
        SecretSpec(
            "access_token",
            "a long-lived user or system-user access token with ads_read on the ad account",
        ),
    ),
    cadence=Cadence.every_hours(4, minute=25, why="Meta refreshes insights every 15 minutes"),
    # Meta throttles Ads Insights per app, over every /insights call of the app (sync and
    # async together): "a fixed load limit per application per second", code 4 past it
    # (Insights "Limits and Best Practices"). It publishes no number and warns that sending
    # several queries at once is what trips it. Every workspace syncs through the
    # deployment's one app and a sync keeps one request or report run in flight, so the
    # pool is the app's queries in flight: 3. X-FB-Ads-Insights-Throttle's app_id_util_pct
    # shows the headroom; `kpi-pipelines pools set --limit meta_ads=N` changes it.
    pool_limit=3,
    **ad_platform("meta", reports=(BY_CAMPAIGN, BY_DAY), campaigns=CAMPAIGNS),
    demo="kpi_pipelines.sandbox.meta.demo:prepare",
)
