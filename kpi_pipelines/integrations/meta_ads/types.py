"""What a meta_ads connection stores, and pydantic models of what the Graph API answers.

Lists are validated as an envelope (`data` and `paging`); each insights row and each
campaign on its own, so one bad row is named and skipped while the rest is stored. Meta
sends every metric as a string: counts are whole numbers, money is major units of the
account's currency.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from kpi_pipelines.integrations.shared.connection_settings import ConnectionSettings

# An action type as Meta names one ("omni_purchase", "offsite_conversion.fb_pixel_purchase").
ActionType = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_.]{0,99}$")]
Count = Annotated[int, Field(ge=0, le=10**15)]
Amount = Annotated[Decimal, Field(ge=0, le=Decimal(10) ** 15, allow_inf_nan=False)]
Id = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,30}$")]
# kpi-definitions.md's default: Meta's deduplicated purchases where present, else purchases.
DEFAULT_CONVERSIONS = ("omni_purchase", "purchase")


class MetaAdsSettings(ConnectionSettings):
    """A workspace's ad account; the token is named in the connection's secret_env."""

    account_id: Id
    # Action types that count as a conversion, in order of preference: each row takes the
    # first one present in its `actions` (never a sum: they overlap).
    conversions: list[ActionType] = Field(
        default_factory=lambda: list(DEFAULT_CONVERSIONS), min_length=1, max_length=10
    )
    # The same for the value, from `action_values` (default: the conversions' own types).
    conversion_values: list[ActionType] | None = Field(default=None, min_length=1, max_length=10)

    @field_validator("account_id", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, str):
            number = value.strip().removeprefix("act_")
            if not re.fullmatch(r"[0-9]{1,30}", number):
                raise ValueError(
                    f"account_id {value!r} is not a Meta ad account id: use the number shown in"
                    " Ads Manager's account menu or Business settings > Ad accounts (act_123 or 123)"
                )
            return number
        return value

    @property
    def value_types(self) -> list[str]:
        return self.conversion_values or self.conversions


class _Graph(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ActionStat(_Graph):
    action_type: str
    value: Amount


class InsightRow(_Graph):
    """One day of a campaign (level=campaign) or of the account (level=account)."""

    date_start: date
    date_stop: date
    campaign_id: Id | None = None
    spend: Amount
    impressions: Count
    clicks: Count = 0
    actions: list[ActionStat] = Field(default_factory=list, max_length=1000)
    action_values: list[ActionStat] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _one_day(self) -> InsightRow:
        if self.date_start != self.date_stop:
            raise ValueError(f"a daily row spans {self.date_start}..{self.date_stop}")
        return self

    def first(self, stats: list[ActionStat], types: list[str]) -> Decimal:
        """The value of the first of `types` the list has (0 when none): one type, never a
        sum of overlapping ones."""
        by_type = {stat.action_type: stat.value for stat in stats}
        return next((by_type[t] for t in types if t in by_type), Decimal(0))


class MetaCampaign(_Graph):
    id: Id
    name: str = Field(max_length=400)
    status: str = Field(max_length=40)
    effective_status: str | None = Field(default=None, max_length=40)


class AdAccountNode(_Graph):
    id: str
    name: str | None = None
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    timezone_name: str = Field(max_length=64)


class Paging(_Graph):
    next: str | None = None


class GraphList(_Graph):
    data: list[Any]
    paging: Paging | None = None


class ReportRun(_Graph):
    id: Id
    async_status: Literal[
        "Job Not Started",
        "Job Started",
        "Job Running",
        "Job Completed",
        "Job Failed",
        "Job Skipped",
    ]
    async_percent_completion: int = Field(default=0, ge=0, le=100)
    error_message: str | None = None


class GraphErrorBody(_Graph):
    code: int
    error_subcode: int | None = None
    message: str = ""
    type: str | None = None


class GraphErrorEnvelope(_Graph):
    error: GraphErrorBody
