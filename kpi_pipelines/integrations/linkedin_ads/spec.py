"""LinkedIn Ads, declared: daily ad metrics per campaign and per account, every 6 hours."""

from kpi_pipelines.integrations.linkedin_ads.adapter import (
    FIELDS,
    LINKEDIN,
    LINKEDIN_VERSION,
    PROVIDER,
    LinkedInAdsAdapter,
)
from kpi_pipelines.integrations.linkedin_ads.types import Campaign, LinkedInAdsSettings
from kpi_pipelines.integrations.shared.ad_metrics import ad_campaigns, ad_platform
from kpi_pipelines.integrations.shared.engines.report import Report
from kpi_pipelines.integrations.shared.oauth import oauth_secrets
from kpi_pipelines.integrations.shared.spec import AuthKind, Cadence, ProviderSpec

CAMPAIGNS = ad_campaigns(Campaign)
LIMITS = {
    # Conversions keep arriving for 30 days: every sync reads them again.
    "lookback_days": 30,
    # adAnalytics takes at most 20 metrics a request (dateRange and pivotValues aside).
    "max_metrics": 20,
    "row_key": ("day", "campaign_id"),
}
# 100 campaign URNs keep a request's URL short, and with 31 days an answer holds at most
# 3,100 of the 15,000 elements adAnalytics cuts at.
BY_CAMPAIGN = Report(
    "by_campaign",
    ("day", "campaign_id"),
    tuple(FIELDS),
    ids_from="campaigns",
    max_ids=100,
    max_days=31,
    **LIMITS,
)
# The account's own rows (pivot ACCOUNT): a total is the provider's point, never a sum.
BY_ACCOUNT = Report("by_account", ("day",), tuple(FIELDS), max_days=31, **LIMITS)


SPEC = ProviderSpec(
    key=PROVIDER,
    display_name="LinkedIn Ads",
    description=(
        "Daily ad_spend, impressions, clicks, conversions, conversion_value and their"
        " ratios (ctr, cpc, cpm, roas) from LinkedIn's adAnalytics (Marketing API version"
        f" {LINKEDIN_VERSION}), per campaign and for the ad account. Days are UTC days"
        " (LinkedIn's). Conversions are the connection's `conversions` metrics (default"
        " externalWebsiteConversions) and their value conversionValueInLocalCurrency; money"
        " is converted to the reporting currency with the day's rate. Each sync re-reads the"
        " last 30 days (LinkedIn restates conversions)."
    ),
    adapter=LinkedInAdsAdapter,
    auth=AuthKind.OAUTH2_REFRESH,
    settings=LinkedInAdsSettings,
    secrets=oauth_secrets(LINKEDIN, "scopes r_ads and r_ads_reporting"),
    oauth=LINKEDIN,
    cadence=Cadence.every_hours(6, minute=30),
    # LinkedIn's limits are the application's: calls per day per endpoint (the Developer
    # Portal shows them; a spent one stops the sync until midnight UTC) and 45 million
    # metric values per 5 minutes across all its queries. A sync asks for at most 3,100
    # elements x 6 metrics a request, about one a second: 4 syncs at once stay under
    # 2,400 requests (45M values) per 5 minutes.
    pool_limit=4,
    **ad_platform("linkedin", reports=(BY_CAMPAIGN, BY_ACCOUNT), campaigns=CAMPAIGNS),
    demo="kpi_pipelines.sandbox.linkedin.demo:prepare",
)
