"""What an x_ads connection stores, and pydantic models of what X Ads answers.

Envelopes are validated whole (a malformed answer fails its request); each campaign and
each (campaign, day) of stats is validated on its own, so one bad record is named and
skipped while the rest is stored.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from kpi_pipelines.integrations.shared.connection_settings import ConnectionSettings

# X's web conversion metrics (the WEB_CONVERSION metric group), by their event.
WebConversion = Literal["purchases", "sign_ups", "site_visits", "downloads", "custom"]
AccountId = Annotated[str, StringConstraints(pattern=r"^[0-9a-z]{1,32}$")]
Count = Annotated[int, Field(ge=0)]


class XAdsConnectionSettings(ConnectionSettings):
    """A workspace's X Ads account. Its OAuth 1.0a token and secret are named in the
    connection's secret_env (the app's consumer key is the operator's unless named too)."""

    # The ads account id X shows in Ads Manager's URL (e.g. 18ce54d4x5t).
    account_id: AccountId
    # What counts as a conversion: these web conversion events (X's WEB_CONVERSION group:
    # its conversion_<event> metrics), their sale amount as the conversion value.
    conversion_events: tuple[WebConversion, ...] = Field(default=("purchases",), min_length=1)
    # Days before the cursor every sync reads again (X settles billing within 3 days).
    lookback_days: int = Field(default=3, ge=0, le=30)


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class XAccount(_Lenient):
    id: str
    name: str = ""
    timezone: str


class XCampaign(_Lenient):
    """A campaign as `GET accounts/:id/campaigns?with_deleted=true` lists it."""

    id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    name: str
    entity_status: str
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
    deleted: bool = False


class XStatsEntry(_Lenient):
    id: str
    id_data: list[dict[str, Any]] = Field(max_length=1)


class XStats(_Lenient):
    """The stats body (synchronous, or a job's result file): per-day arrays per entity."""

    data_type: Literal["stats"]
    time_series_length: Count
    data: list[XStatsEntry]


class XJob(_Lenient):
    id_str: str
    status: Literal["QUEUED", "PROCESSING", "UPLOADING", "SUCCESS", "FAILED", "CANCELLED"]
    url: str | None = None


class XConversions(_Lenient):
    """One web conversion metric of one day: how many (`metric`: after an engagement or
    a view) and their sale amount, in micros of the account's currency."""

    metric: Count = 0
    sale_amount: Count = 0


class XDay(BaseModel):
    """One campaign's day, as X's per-day arrays have it (money in micros)."""

    model_config = ConfigDict(extra="forbid")

    day: date
    campaign_id: str
    impressions: Count = 0
    clicks: Count = 0
    billed_charge_local_micro: Count = 0
    conversions: dict[WebConversion, XConversions] = {}
