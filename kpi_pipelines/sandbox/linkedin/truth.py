"""What LinkedIn reports, from the simulated accounts' own state: per UTC day, and its
conversion metrics as views of the kit's conversion cells.

LinkedIn ad accounts have no time zone (the adAccounts resource has none) and adAnalytics
days are UTC days, like its daily limits: a campaign delivers in its advertiser's hours, and
a Tokyo advertiser's morning is the UTC day before. So a day's figures are the campaign's
whole hours from 00:00 to 24:00 UTC (`AdAccount.figures`).

Conversion metrics: `externalWebsiteConversions` counts every conversion the Insight Tag
saw (every kind, channel `web`) and `conversionValueInLocalCurrency` their value;
`oneClickLeads` counts the leads of LinkedIn's own lead forms (kind `lead`, channel
`onsite`). A connection counts the sum of the count metrics it names (defaults from
kpi-definitions.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from kpi_pipelines.sandbox.kit.ads import WEB_CONVERSIONS, AdAccount, AdMetrics, Figures
from kpi_pipelines.sandbox.kit.ads.model import ConversionRule

LEAD_FORMS = ConversionRule(kinds=frozenset({"lead"}), channels=frozenset({"onsite"}))
COUNT_RULES: dict[str, ConversionRule] = {
    "externalWebsiteConversions": WEB_CONVERSIONS,
    "oneClickLeads": LEAD_FORMS,
}
VALUE_RULES: dict[str, ConversionRule] = {"conversionValueInLocalCurrency": WEB_CONVERSIONS}
DEFAULT_CONVERSIONS = ("externalWebsiteConversions",)
DEFAULT_VALUE = "conversionValueInLocalCurrency"


def utc_midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, UTC)


def days(start: date, end: date) -> Iterable[date]:
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


def figures_by_utc_day(
    account: AdAccount,
    start: date,
    end: date,
    *,
    campaign_ids: Iterable[str] | None = None,
    as_of: datetime | None = None,
) -> dict[tuple[str, date], Figures]:
    """Every (campaign, UTC day) row with delivery that LinkedIn shows at `as_of`."""
    if campaign_ids is None:
        campaign_ids = [c.id for c in account.campaigns(as_of=as_of)]
    out: dict[tuple[str, date], Figures] = {}
    for campaign_id in campaign_ids:
        for day in days(start, end):
            figures = account.figures(
                campaign_id, utc_midnight(day), utc_midnight(day + timedelta(days=1)), as_of=as_of
            )
            if figures is not None and figures.delivered:
                out[(campaign_id, day)] = figures
    return out


def metrics_of(figures: Figures, conversions: Iterable[str], value: str | None) -> AdMetrics:
    """kpi-definitions.md's ad metrics of `figures`, counting the named conversion metrics."""
    counted = sum(figures.count(COUNT_RULES[name]) for name in conversions)
    worth = figures.value(VALUE_RULES[value]).major if value else Decimal(0)
    return AdMetrics(
        currency=figures.currency,
        ad_spend=figures.spend.major,
        impressions=figures.impressions,
        clicks=figures.clicks,
        conversions=counted,
        conversion_value=worth,
    )
