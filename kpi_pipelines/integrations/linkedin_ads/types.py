"""LinkedIn Marketing API records (LinkedIn-Version 202611) and a connection's settings.

Money is a decimal string in the account's currency (`costInLocalCurrency: "209.449"`, more
decimals than the currency has are possible); counts are integers; a day is
`{"year", "month", "day"}`; an element names what it is about by URN in `pivotValues`.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from kpi_pipelines.integrations.shared.connection_settings import ConnectionSettings

# LinkedIn's conversion counts a connection may count (summed) and the value it may take.
ConversionMetric = Literal["externalWebsiteConversions", "oneClickLeads"]
ValueMetric = Literal["conversionValueInLocalCurrency"]
_DECIMAL = re.compile(r"^-?\d{1,18}(\.\d{1,12})?([eE][-+]?\d{1,3})?$")
_CAMPAIGN_URN = re.compile(r"^urn:li:sponsoredCampaign:(\d{1,19})$")
_ACCOUNT_URN = re.compile(r"^urn:li:sponsoredAccount:(\d{1,19})$")


def _decimal(value: Any) -> Decimal:
    """A decimal string as LinkedIn writes money (never NaN, infinite or a JSON float)."""
    if not isinstance(value, str) or not _DECIMAL.match(value):
        raise ValueError(f"money must be a decimal string, got {str(value)[:40]!r}")
    try:
        return Decimal(value)
    except InvalidOperation:
        raise ValueError(f"money must be a decimal string, got {value[:40]!r}") from None


Money = Annotated[Decimal, BeforeValidator(_decimal)]
Count = Annotated[int, Field(ge=0, le=10**15, strict=True)]


class LinkedInAdsSettings(ConnectionSettings):
    """A connection to one LinkedIn ad account."""

    # The ad account's number (Campaign Manager shows it under the account's name).
    account_id: str = Field(pattern=r"^\d{1,19}$")
    # LinkedIn metrics counted (summed) as conversions.
    conversions: tuple[ConversionMetric, ...] = Field(
        default=("externalWebsiteConversions",), min_length=1, max_length=2
    )
    # The metric read as conversion_value (None: no conversion value, no roas).
    conversion_value: ValueMetric | None = "conversionValueInLocalCurrency"
    # Recent days LinkedIn restates (conversions keep arriving for 30 days).
    lookback_days: int | None = Field(default=None, ge=0, le=90)

    @field_validator("conversions")
    @classmethod
    def _once_each(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("a conversion metric is named twice")
        return value


class AdAccount(BaseModel):
    """`GET /rest/adAccounts/{id}`: the account's currency (LinkedIn accounts have no time
    zone: its days are UTC days)."""

    model_config = ConfigDict(extra="ignore")

    id: int
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    name: str | None = Field(default=None, max_length=1000)


class RunSchedule(BaseModel):
    model_config = ConfigDict(extra="ignore")

    start: int | None = None  # epoch milliseconds
    end: int | None = None


class Campaign(BaseModel):
    """One campaign of the search finder: what names a campaign's points."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    id: str = Field(pattern=r"^\d{1,19}$")
    name: str = Field(max_length=1000)
    status: str = Field(max_length=40)
    run_schedule: RunSchedule | None = Field(default=None, alias="runSchedule")

    def may_deliver(self, first: datetime, last: datetime) -> bool:
        """Whether its run schedule meets [first, last) (no schedule: it may)."""
        schedule = self.run_schedule or RunSchedule()
        starts_after = schedule.start is not None and schedule.start >= _ms(last)
        ended_before = schedule.end is not None and schedule.end < _ms(first)
        return not (starts_after or ended_before)

    @field_validator("id", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class PageMetadata(BaseModel):
    model_config = ConfigDict(extra="ignore")

    next_page_token: str | None = Field(default=None, alias="nextPageToken", max_length=2000)


class ElementsPage(BaseModel):
    """A finder's answer: its elements (each validated on its own) and the next page's
    token where it pages (the campaign search)."""

    model_config = ConfigDict(extra="ignore")

    elements: list[Any]
    metadata: PageMetadata = Field(default_factory=PageMetadata)


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class Day(BaseModel):
    model_config = ConfigDict(extra="forbid")

    year: int
    month: int
    day: int

    def date(self) -> date:
        return date(self.year, self.month, self.day)


class DateRange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: Day
    end: Day


class AnalyticsElement(BaseModel):
    """One element of adAnalytics (DAILY), with the fields that were asked for."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    pivot_values: list[str] = Field(alias="pivotValues", min_length=1, max_length=1)
    date_range: DateRange = Field(alias="dateRange")
    impressions: Count | None = None
    clicks: Count | None = None
    cost: Money | None = Field(default=None, alias="costInLocalCurrency")
    external_website_conversions: Count | None = Field(
        default=None, alias="externalWebsiteConversions"
    )
    one_click_leads: Count | None = Field(default=None, alias="oneClickLeads")
    conversion_value: Money | None = Field(default=None, alias="conversionValueInLocalCurrency")

    def row(self) -> AnalyticsRow:
        """The row the engine merges and transforms; ValueError when it is not one day of a
        campaign or of an account."""
        first, last = self.date_range.start.date(), self.date_range.end.date()
        if first != last:
            raise ValueError(f"a DAILY element spans {first}..{last}, not one day")
        urn = self.pivot_values[0]
        campaign = _CAMPAIGN_URN.match(urn)
        if campaign is None and _ACCOUNT_URN.match(urn) is None:
            raise ValueError(f"pivotValues names {urn[:80]!r}, not a campaign or an account")
        metrics = self.model_dump(exclude={"pivot_values", "date_range"}, exclude_unset=True)
        return AnalyticsRow(day=first, campaign_id=campaign[1] if campaign else "", **metrics)


class AnalyticsRow(BaseModel):
    """One day of a campaign (or of the account: `campaign_id` ""), the metrics its requests
    asked for set (the engine merges a row's requests by day and campaign)."""

    day: date
    campaign_id: str
    impressions: int | None = None
    clicks: int | None = None
    cost: Decimal | None = None
    external_website_conversions: int | None = None
    one_click_leads: int | None = None
    conversion_value: Decimal | None = None
