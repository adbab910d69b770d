"""The Google Analytics 4 adapter: daily web metrics from the GA4 Data API's runReport.

The report engine reads it (date windows in the property's time zone, a cursor per
report, lookback restatement, quota stops that resume: engines/report.py); this module is
what GA4 does its own way:

- Two reports (spec.py): `by_date_channel` (date x sessionDefaultChannelGroup: the
  per-channel points) and `by_date` (date alone: the total points). The total is never a
  sum of channel rows: `totalUsers` is not additive (one user visits through several
  channels), and a report's `totals` span its whole date range, not a day.
- The probe is a one-row report for "today": it gives the property's time zone, and today
  there. Access to the property is proven by that first report request (a 403 says the
  account lacks access), so that an exhausted quota does not look like a broken connection.
- A report is paged with offset/limit in the request body until offset >= rowCount, in a
  stable order (so offsets address the same rows page after page).
- Days are YYYYMMDD in the property's time zone; a day is stored as that date's 00:00 UTC
  with metadata granularity=day and the property's time zone. GA4 restates the last 24-48
  hours: each report restates 3 days (spec.py), or the connection's `lookback_days`.
- Quotas are all HTTP 429 RESOURCE_EXHAUSTED; the message says which (`classify_ga4_response`):
  "Exhausted concurrent requests quota." is retried after a backoff of seconds; an
  exhausted hourly or daily token quota stops the sync (the engine keeps what was read and
  says when it resumes: hourly quotas come back at the next hour, daily ones at midnight
  Pacific time).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import httpx
from pydantic import PrivateAttr, ValidationError

from kpi_pipelines.integrations.google_analytics.types import (
    GA4ConnectionSettings,
    GA4Row,
    ReportRow,
    RunReportResponse,
)
from kpi_pipelines.integrations.shared.engines.report import (
    Query,
    Report,
    ReportAdapter,
    ReportScope,
)
from kpi_pipelines.integrations.shared.errors import ProviderError
from kpi_pipelines.integrations.shared.http import RetryDecision
from kpi_pipelines.integrations.shared.oauth import (
    GoogleApiAdapter,
)
from kpi_pipelines.integrations.shared.paging import Offset, Page, PageRequest
from kpi_pipelines.integrations.shared.validation import describe_validation, validated_settings
from kpi_pipelines.models import KPIData, day_timestamp

PROVIDER = "google_analytics"
DEFAULT_BASE_URL = "https://analyticsdata.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/analytics.readonly"
MAX_PAGE_SIZE = 250_000
# Google's daily quotas reset at midnight Pacific time.
QUOTA_DAY_ZONE = ZoneInfo("America/Los_Angeles")

# GA4 metric -> GA4Row field. `conversions` is now `keyEvents` in GA4.
GA4_METRICS: dict[str, str] = {
    "sessions": "sessions",
    "totalUsers": "total_users",
    "newUsers": "new_users",
    "engagedSessions": "engaged_sessions",
    "keyEvents": "key_events",
}
# KPI catalog key -> GA4Row field.
KPI_METRICS: dict[str, str] = {
    "sessions": "sessions",
    "total_users": "total_users",
    "new_users": "new_users",
    "engaged_sessions": "engaged_sessions",
    "conversions": "key_events",
}
CHANNEL_DIMENSION = "sessionDefaultChannelGroup"


class GoogleAnalyticsAdapter(GoogleApiAdapter, ReportAdapter):
    """GA4 Data API over the shared HTTP layer, with Google OAuth from the connection."""

    provider: ClassVar[str] = PROVIDER
    default_base_url: ClassVar[str] = DEFAULT_BASE_URL

    page_size: int = 10_000  # rows per runReport page (GA4 allows up to 250,000)
    max_attempts: int = 6
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 60.0
    request_budget: int | None = None  # requests one sync may send; None: no limit

    _scope: ReportScope | None = PrivateAttr(default=None)

    # --- connect / disconnect -------------------------------------------------------------

    def check_connection(self) -> None:
        """Validate the settings and prove the OAuth credentials with one token refresh
        (access to the property is proven by the probe: see the module's doc)."""
        self.check_report_options()
        connection_settings = self._settings()
        if self.page_size < 1 or self.page_size > MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}, got {self.page_size}")
        api = self._open_google_api(
            max_attempts=self.max_attempts,
            backoff_base=self.backoff_base_seconds,
            backoff_max=self.backoff_max_seconds,
            request_budget=self.request_budget,
            classify=classify_ga4_response,
        )
        api.session.access_token()
        self.context.log.info(
            f"google_analytics: credentials accepted for property {connection_settings.property_id}"
        )

    def disconnect(self) -> None:
        self._scope = None
        super().disconnect()

    # --- the report engine's hooks -------------------------------------------------------

    def probe(self) -> ReportScope:
        """The property's time zone and today's date there (one one-row report)."""
        property_id = self._settings().property_id
        response = self._run_report(
            property_id,
            {
                "dateRanges": [{"startDate": "today", "endDate": "today"}],
                "dimensions": [{"name": "date"}],
                "metrics": [{"name": "sessions"}],
                "keepEmptyRows": True,
                "limit": "1",
            },
        )
        scope = ReportScope.in_zone(
            PROVIDER,
            identity={"property_id": property_id},
            time_zone=response.metadata.time_zone or "UTC",
            label=f"property {property_id}",
        )
        for raw in response.rows:  # the property's own today, where the report says it
            try:
                row = ReportRow.model_validate(raw)
                day = datetime.strptime(row.dimension_values[0].value, "%Y%m%d").date()
                scope = replace(scope, today=day)
            except (ValidationError, ValueError, IndexError):
                pass
        self._scope = scope
        return self._scope

    def lookback_days(self, report: Report) -> int:
        """The connection's lookback_days where it sets one, else the report's."""
        days = self._settings().lookback_days
        return report.lookback_days if days is None else days

    def paginator(self, report: Report) -> Offset:
        return Offset(self.page_size, in_body=True)

    def fetch_page(
        self, report: Report, scope: ReportScope, query: Query, request: PageRequest
    ) -> Page[Any]:
        page = self._run_report(
            scope.identity["property_id"],
            {
                "dateRanges": [
                    {"startDate": query.first.isoformat(), "endDate": query.last.isoformat()}
                ],
                "dimensions": [{"name": name} for name in report.dimensions],
                "metrics": [{"name": name} for name in report.metrics],
                # A stable order, so that offsets address the same rows page after page.
                "orderBys": [{"dimension": {"dimensionName": name}} for name in report.dimensions],
                # GA4 takes its int64 fields as JSON strings.
                **{name: str(value) for name, value in request.body.items()},
                "returnPropertyQuota": True,
            },
        )
        self._check_headers(report, page)
        if page.metadata.subject_to_thresholding:
            self.context.log.info(
                f"google_analytics: {report.name} {query.first}..{query.last} is subject to"
                " thresholding (GA4 withholds rows with few users)"
            )
        quota = page.property_quota
        if quota is not None and quota.tokens_per_hour is not None:
            self.context.log.debug(
                f"google_analytics: {quota.tokens_per_hour.remaining} tokens left this hour"
            )
        return Page(items=page.rows, total=page.row_count)

    def validate(self, report: Report, raw: Any) -> GA4Row:
        row = ReportRow.model_validate(raw)
        dims = [v.value for v in row.dimension_values]
        metrics = [v.value for v in row.metric_values]
        if len(dims) != len(report.dimensions) or len(metrics) != len(report.metrics):
            raise ValueError(
                f"{len(dims)} dimension and {len(metrics)} metric values, expected"
                f" {len(report.dimensions)} and {len(report.metrics)}"
            )
        fields: dict[str, Any] = {
            GA4_METRICS[name]: value for name, value in zip(report.metrics, metrics, strict=True)
        }
        for name, value in zip(report.dimensions, dims, strict=True):
            if name == "date":
                fields["day"] = value
            elif name == CHANNEL_DIMENSION:
                fields["channel"] = value
        return GA4Row.model_validate(fields)

    def describe(self, raw: Any) -> str:
        return _describe_row(raw)

    def transform(self, raw: GA4Row) -> list[KPIData]:
        """One row -> its six daily points (engagement_rate only when there were sessions)."""
        scope = self._scope
        assert scope is not None, "transform() runs inside sync()"
        metadata: dict[str, Any] = {
            "granularity": "day",
            "time_zone": scope.time_zone,
            "property_id": scope.identity["property_id"],
        }
        dimensions: dict[str, str] = {}
        if raw.channel is not None:
            metadata["channel"] = raw.channel
            dimensions["channel"] = raw.channel
        values: dict[str, float] = {
            metric: float(getattr(raw, field)) for metric, field in KPI_METRICS.items()
        }
        if raw.sessions:
            values["engagement_rate"] = raw.engaged_sessions / raw.sessions
        timestamp = day_timestamp(raw.day)
        workspace_id = self.context.workspace.id
        return [
            KPIData(
                value=value,
                timestamp=timestamp,
                metadata=metadata,
                source=PROVIDER,
                workspace_id=workspace_id,
                metric=metric,
                dimensions=dimensions,
            )
            for metric, value in values.items()
        ]

    # --- requests ---------------------------------------------------------------------------

    def _check_headers(self, report: Report, page: RunReportResponse) -> None:
        dims = [h.name for h in page.dimension_headers]
        metrics = [h.name for h in page.metric_headers]
        if page.rows and (dims != list(report.dimensions) or metrics != list(report.metrics)):
            raise ProviderError(
                PROVIDER,
                f"runReport answered with dimensions {dims} and metrics {metrics};"
                f" expected {list(report.dimensions)} and {list(report.metrics)}",
            )

    def _run_report(self, property_id: str, body: dict[str, Any]) -> RunReportResponse:
        assert self._api is not None, "connect() first"
        # A report is a read: the same body twice in one sync is served from the cache.
        data = self._api.http.post_json(
            f"/v1beta/properties/{property_id}:runReport", json=body, cacheable=True
        )
        try:
            return RunReportResponse.model_validate(data)
        except ValidationError as exc:
            raise ProviderError(
                PROVIDER,
                "runReport returned a response that is not a report:"
                f" {describe_validation(exc, limit=3)}",
            ) from None

    def _settings(self) -> GA4ConnectionSettings:
        return validated_settings(
            self.context.connection,
            GA4ConnectionSettings,
            hint=' (expected {"property_id": "123456789", "lookback_days": 3})',
        )


def classify_ga4_response(response: httpx.Response) -> RetryDecision | None:
    """Tell GA4's quota errors apart (all are HTTP 429 RESOURCE_EXHAUSTED).

    The concurrent-requests limit clears in seconds: retry with backoff. An hourly or daily
    token quota does not: stop, saying when it comes back.
    """
    if response.status_code != 429:
        return None
    message = _google_message(response).lower()
    if "concurrent" in message:
        return RetryDecision(retry=True)
    if "per day" in message:
        return RetryDecision(retry=False, quota_reset_at=_next_pacific_midnight())
    if "per hour" in message:
        return RetryDecision(retry=False, quota_reset_at=_next_hour())
    return None  # another 429: the default backoff


def _google_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    return response.text


def _next_hour(now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    return now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


def _next_pacific_midnight(now: datetime | None = None) -> datetime:
    local = (now or datetime.now(UTC)).astimezone(QUOTA_DAY_ZONE)
    tomorrow = local.date() + timedelta(days=1)
    return datetime.combine(tomorrow, datetime.min.time(), QUOTA_DAY_ZONE).astimezone(UTC)


def _describe_row(raw: Any) -> str:
    try:
        values = [v.get("value") for v in raw.get("dimensionValues", [])]
    except AttributeError:
        return "(not an object)"
    return "[" + ", ".join(str(v) for v in values) + "]"
