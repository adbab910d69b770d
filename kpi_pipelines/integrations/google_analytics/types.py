"""What a google_analytics connection stores, and pydantic models of the GA4 Data API.

The response envelope is validated as a whole (a malformed report fails the request);
each row is validated on its own, so one bad row is named and skipped while the rest of
the report is stored (DESIGN.md: API records that fail validation are reported, never
half-stored).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from kpi_pipelines.integrations.shared.connection_settings import ConnectionSettings


class GA4ConnectionSettings(ConnectionSettings):
    """A workspace's GA4 property. Secrets are named in the connection's secret_env."""

    property_id: str
    # Days before the cursor that every sync reads again; unset: the reports' own (3: GA4
    # restates the last 24-48 h).
    lookback_days: int | None = Field(default=None, ge=0, le=60)

    @field_validator("property_id", mode="before")
    @classmethod
    def _numeric(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str):
            value = value.strip().removeprefix("properties/")
            if not re.fullmatch(r"[0-9]+", value):
                raise ValueError(
                    f"property_id {value!r} is not a GA4 property id: use the numeric id shown"
                    " in GA4 under Admin > Property details (e.g. '123456789')"
                )
        return value


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class DimensionHeader(_Camel):
    name: str


class MetricHeader(_Camel):
    name: str
    type: str | None = None


class ResponseMetaData(_Camel):
    time_zone: str | None = None
    currency_code: str | None = None
    subject_to_thresholding: bool = False
    data_loss_from_other_row: bool = False


class QuotaStatus(_Camel):
    consumed: int = 0
    remaining: int = 0


class PropertyQuota(_Camel):
    tokens_per_day: QuotaStatus | None = None
    tokens_per_hour: QuotaStatus | None = None
    concurrent_requests: QuotaStatus | None = None
    tokens_per_project_per_hour: QuotaStatus | None = None


class RunReportResponse(_Camel):
    """`runReport`'s response. Proto3 JSON omits empty lists and zero numbers."""

    dimension_headers: list[DimensionHeader] = Field(default_factory=list)
    metric_headers: list[MetricHeader] = Field(default_factory=list)
    # Each row is validated on its own (GA4Row), so one bad row does not sink the page.
    rows: list[Any] = Field(default_factory=list)
    row_count: int = Field(default=0, ge=0)
    metadata: ResponseMetaData = Field(default_factory=ResponseMetaData)
    property_quota: PropertyQuota | None = None


class _Value(BaseModel):
    model_config = ConfigDict(extra="ignore")

    value: str = ""


class ReportRow(_Camel):
    """One row as the API sends it: string values in header order."""

    dimension_values: list[_Value] = Field(default_factory=list)
    metric_values: list[_Value] = Field(default_factory=list)


class GA4Row(BaseModel):
    """One day (and channel group, for the breakdown report) of web metrics."""

    model_config = ConfigDict(frozen=True)

    day: date
    channel: str | None = None
    sessions: int = Field(ge=0)
    total_users: int = Field(ge=0)
    new_users: int = Field(ge=0)
    engaged_sessions: int = Field(ge=0)
    key_events: int = Field(ge=0)

    @field_validator("day", mode="before")
    @classmethod
    def _ga4_date(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not re.fullmatch(r"[0-9]{8}", value):
                raise ValueError(f"date {value!r} is not YYYYMMDD")
            return datetime.strptime(value, "%Y%m%d").date()
        return value

    @field_validator(
        "key_events", "sessions", "total_users", "new_users", "engaged_sessions", mode="before"
    )
    @classmethod
    def _integer_text(cls, value: Any) -> Any:
        # Counts come as decimal strings ("1234"); a fraction or text is not a count.
        if isinstance(value, str) and not re.fullmatch(r"-?[0-9]+", value.strip()):
            raise ValueError(f"{value!r} is not a whole number")
        return value

    @property
    def label(self) -> str:
        """How a rejected row is named in SyncResult.errors."""
        day = self.day.strftime("%Y%m%d")
        return f"date={day}" + (f" channel={self.channel}" if self.channel is not None else "")
