"""kpi-definitions.md's ad metrics of one reported day, as points: what every ad platform
(Meta, LinkedIn, X) turns its rows into once it has read them its own way.

    row = AdDay(day, spend=Decimal("500"), impressions=100_000, clicks=1_250,
                conversions=Decimal(40), conversion_value=Decimal("2000"))
    ad_points(row, currency="USD", rates=rates, source="meta_ads", workspace_id="acme",
              dimensions={"campaign_id": "2385..."}, metadata={"time_zone": "..."})
    -> ad_spend 500, impressions, clicks, conversions, conversion_value 2000,
       ctr 0.0125, cpc 0.40, cpm 5.00, roas 4.0

Money (spend, conversion value, and the cost ratios cpc and cpm) is converted from the
account's currency into the workspace's reporting currency with the day's rate; each money
point keeps the account's currency and amount in its metadata. Ratios come from the day's
numerator and denominator (a total over days or campaigns is a ratio of sums, which the
platforms' totals rows already are), and a zero denominator gives no point at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction
from typing import Any

from pydantic import BaseModel

from kpi_pipelines.integrations.shared.engines.report import ReportEngine, ReportRunConfig
from kpi_pipelines.integrations.shared.engines.report_types import Entities, Report
from kpi_pipelines.integrations.shared.money import DayRates
from kpi_pipelines.models import KPIData, day_timestamp

AD_METRICS = (
    "ad_spend",
    "impressions",
    "clicks",
    "conversions",
    "conversion_value",
    "ctr",
    "cpc",
    "cpm",
    "roas",
)


def ad_platform(kind: str, *, reports: tuple[Report, ...], campaigns: Entities) -> dict[str, Any]:
    """What every ad platform's ProviderSpec declares alike: the asset group and tags, the ad
    metrics, the report engine over the platform's reports with its campaigns as the entity
    stream (the names a breakdown point carries), and the report run config (start_date).

        SPEC = ProviderSpec(key=..., adapter=..., cadence=..., pool_limit=...,
                            **ad_platform("meta", reports=(BY_CAMPAIGN, BY_DAY), campaigns=CAMPAIGNS))
    """
    return {
        "group": "advertising",
        "kinds": frozenset({kind}),
        "tags": {"kpi/domain": "marketing"},
        "metrics": AD_METRICS,
        "engine": ReportEngine(reports=reports, entities=(campaigns,)),
        "run_config": ReportRunConfig,
    }


def ad_campaigns(model: type[BaseModel], *, status: str = "status") -> Entities:
    """An ad account's campaigns as the report engine's entity stream: a point whose
    `campaign_id` names one gets its `campaign_name` and `campaign_status` (the model's
    `name` and `status` fields) in its metadata."""
    return Entities(
        "campaigns",
        model,
        dimension="campaign_id",
        metadata={"campaign_name": "name", "campaign_status": status},
    )


@dataclass(frozen=True)
class AdDay:
    """One day of a campaign (or of an account) as its platform reported it; money in major
    units of the account's currency."""

    day: date
    spend: Decimal
    impressions: int
    clicks: int
    conversions: Decimal
    conversion_value: Decimal


def _ratio(numerator: Decimal | int, denominator: Decimal | int, scale: int = 1) -> Fraction | None:
    return None if not denominator else Fraction(numerator) * scale / Fraction(denominator)


def ad_points(
    row: AdDay,
    *,
    currency: str,
    rates: DayRates,
    source: str,
    workspace_id: str,
    dimensions: Mapping[str, str],
    metadata: Mapping[str, Any],
) -> list[KPIData]:
    """The day's points of every ad metric that is defined (see the module)."""
    plain: dict[str, Fraction | None] = {
        "impressions": Fraction(row.impressions),
        "clicks": Fraction(row.clicks),
        "conversions": Fraction(row.conversions),
        "ctr": _ratio(row.clicks, row.impressions),
        "roas": _ratio(row.conversion_value, row.spend),
    }
    money: dict[str, Fraction | None] = {
        "ad_spend": Fraction(row.spend),
        "conversion_value": Fraction(row.conversion_value),
        "cpc": _ratio(row.spend, row.clicks),
        "cpm": _ratio(row.spend, row.impressions, 1000),
    }
    points = []
    for metric in AD_METRICS:
        value = plain.get(metric) if metric in plain else money[metric]
        if value is None:
            continue
        meta = dict(metadata)
        if metric in money:
            meta |= {"currency": currency.upper(), "amount": float(value)}
            reported = rates.to_reporting(float(value), currency, row.day)
        else:
            reported = float(value)
        points.append(
            KPIData(
                value=reported,
                timestamp=day_timestamp(row.day),
                metadata=meta,
                source=source,
                workspace_id=workspace_id,
                metric=metric,
                dimensions=dict(dimensions),
            )
        )
    return points
