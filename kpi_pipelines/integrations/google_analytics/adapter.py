"""The Google Analytics 4 adapter: daily web metrics from the GA4 Data API's runReport.

Two reports per sync, each with its own cursor in sync_state (stream = report name):
`by_date_channel` (date x sessionDefaultChannelGroup: the per-channel points) and `by_date`
(date alone: the total points). The total is never a sum of channel rows: `totalUsers` is
not additive (one user visits through several channels), and a report's `totals` span its
whole date range, not a day.

Days are the property's own (GA4 reports YYYYMMDD in the property's time zone); a day is
stored as that date's 00:00 UTC with metadata granularity=day and the property's time zone.

Reading: the first sync reads `history_days` (90 by default; run config `start_date` for
more), later syncs read from the cursor minus the connection's `lookback_days` (3 by
default), because GA4 restates the last 24-48 hours; the write path stores only values that
changed, so a restatement leaves an audit row per changed value. The range is read in
windows of `window_days`, each report paged with offset/limit until offset >= rowCount.
A report's window is the unit of commit: all its pages are read first, then its points and
its cursor are written in one transaction, so a sync that stops half-way (an outage, a
revoked grant, a spent quota) leaves whole windows behind, never part of one, and the next
sync resumes after the last whole window. Holding a window is cheap whatever the property's
size (at most window_days x the channel groups, a fixed list, rows), and no transaction stays
open while the API is retried.

Quotas (a 429 RESOURCE_EXHAUSTED whose message says which): "Exhausted concurrent requests
quota." is retried after a backoff of seconds; an exhausted hourly or daily token quota
ends the sync cleanly. Decision: that is not a failed run. What was read stays stored, the
cursors stand at the last completed window, and the sync returns `success=False` with a
message naming the time the quota comes back (hourly quotas at the next hour, daily ones at
midnight Pacific time) and the day the next sync resumes from. The materialization shows it
in its `success` and `errors` metadata and the connection's health records it (so the
schedule backs off instead of hammering an empty quota), without a red run or a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from pydantic import PrivateAttr, ValidationError
from sqlalchemy.engine import Connection as DbConnection

from kpi_pipelines import settings
from kpi_pipelines.integrations.google_analytics.types import (
    GA4ConnectionSettings,
    GA4Row,
    ReportRow,
    RunReportResponse,
)
from kpi_pipelines.integrations.shared.errors import ProviderError, ProviderQuotaExhausted
from kpi_pipelines.integrations.shared.http import RetryDecision
from kpi_pipelines.integrations.shared.oauth import (
    GOOGLE_CLIENT_VARIABLES,
    OAuthAdapter,
    google_token_url,
)
from kpi_pipelines.models import KPIData, SyncResult, day_timestamp
from kpi_pipelines.warehouse.tenant_data import load_cursor, save_cursor
from kpi_pipelines.warehouse.writer import WriteStats, write_kpis

PROVIDER = "google_analytics"
DEFAULT_BASE_URL = "https://analyticsdata.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/analytics.readonly"
MAX_PAGE_SIZE = 250_000
MAX_ERRORS = 1000  # rejected rows named in SyncResult.errors (all are counted)
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


@dataclass(frozen=True)
class Report:
    """One runReport shape, and the sync_state stream of its cursor."""

    stream: str
    dimensions: tuple[str, ...]


BY_DATE_CHANNEL = Report("by_date_channel", ("date", CHANNEL_DIMENSION))
BY_DATE = Report("by_date", ("date",))
REPORTS = (BY_DATE_CHANNEL, BY_DATE)


@dataclass(frozen=True)
class _Property:
    property_id: str
    time_zone: str
    today: date


@dataclass
class _Progress:
    rows: int = 0
    rejected: int = 0
    requests: int = 0


class GoogleAnalyticsAdapter(OAuthAdapter):
    """GA4 Data API over the shared HTTP layer, with Google OAuth from the connection."""

    provider: ClassVar[str] = PROVIDER

    base_url: str | None = None  # default: KPI_GOOGLE_ANALYTICS_BASE_URL, else Google's
    token_url: str | None = None  # default: KPI_GOOGLE_TOKEN_URL, else Google's
    history_days: int = 90  # what a first sync reads (run config start_date reads more)
    window_days: int = 31  # days per request; the cursor is saved after each window
    page_size: int = 10_000  # rows per runReport page (GA4 allows up to 250,000)
    timeout_seconds: float = 60.0
    max_attempts: int = 6
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 60.0
    request_budget: int | None = None  # requests one sync may send; None: no limit

    _property: _Property | None = PrivateAttr(default=None)

    # --- connect / disconnect -------------------------------------------------------------

    def check_connection(self) -> None:
        """Validate the settings and prove the OAuth credentials with one token refresh.

        Access to the property is proven by the sync's first request (a 403 there says the
        account lacks access to the property), so that an exhausted report quota does not
        look like a broken connection.
        """
        self._validate_options()
        connection_settings = self._settings()
        if self.page_size < 1 or self.page_size > MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}, got {self.page_size}")
        if self.window_days < 1 or self.history_days < 1:
            raise ValueError("window_days and history_days must be at least 1")
        api = self._open_api(
            token_url=google_token_url(self.token_url),
            base_url=settings.provider_base_url(PROVIDER, DEFAULT_BASE_URL, self.base_url),
            client_variables=GOOGLE_CLIENT_VARIABLES,
            timeout=self.timeout_seconds,
            max_attempts=self.max_attempts,
            backoff_base=self.backoff_base_seconds,
            backoff_max=self.backoff_max_seconds,
            request_budget=self.request_budget,
            classify=classify_ga4_response,
            cache=False,
        )
        api.session.access_token()
        self.context.log.info(
            f"google_analytics: credentials accepted for property {connection_settings.property_id}"
        )

    def disconnect(self) -> None:
        self._property = None
        super().disconnect()

    # --- sync -----------------------------------------------------------------------------

    def sync(self) -> SyncResult:
        started = datetime.now(UTC)
        connection_settings = self._settings()
        progress = _Progress()
        stats = WriteStats()
        errors: list[str] = []
        stopped_by: str | None = None
        try:
            prop = self._probe(connection_settings.property_id)
            plan = self._plan(connection_settings, prop)
            for window_start, window_end in _windows(
                min(start for start, _ in plan.values()),
                max(end for _, end in plan.values()),
                self.window_days,
            ):
                for report in REPORTS:
                    start, end = plan[report]
                    first, last = max(start, window_start), min(end, window_end)
                    if first > last:
                        continue
                    stats += self._sync_window(report, prop, first, last, progress, errors)
        except ProviderQuotaExhausted as exc:
            stopped_by = f"{exc} {self._resume_note()}"
            self.context.log.warning(stopped_by)
            errors.append(stopped_by)
        self.context.log.info(
            f"google_analytics: {progress.rows} row(s) in {progress.requests} report page(s);"
            f" {stats.inserted} new and {stats.updated} changed point(s)"
            + (f"; {self._api.http.stats.as_metadata()}" if self._api is not None else "")
        )
        return SyncResult(
            success=not errors,
            records_processed=progress.rows,
            records_rejected=progress.rejected,
            points_written=stats.written,
            points_unchanged=stats.unchanged,
            errors=errors,
            last_sync_at=started,
            stopped_by=stopped_by,
        )

    def transform(self, raw: GA4Row) -> list[KPIData]:
        """One row -> its six daily points (engagement_rate only when there were sessions)."""
        prop = self._property
        assert prop is not None, "transform() runs inside sync()"
        metadata: dict[str, Any] = {
            "granularity": "day",
            "time_zone": prop.time_zone,
            "property_id": prop.property_id,
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

    # --- planning and cursors ---------------------------------------------------------------

    def _probe(self, property_id: str) -> _Property:
        """The property's time zone and today's date there (one one-row report)."""
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
        zone_name = response.metadata.time_zone or "UTC"
        try:
            zone = ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ProviderError(
                PROVIDER, f"property {property_id} reports an unknown time zone {zone_name!r}"
            ) from None
        today = datetime.now(zone).date()
        for raw in response.rows:
            try:
                row = ReportRow.model_validate(raw)
                today = datetime.strptime(row.dimension_values[0].value, "%Y%m%d").date()
            except (ValidationError, ValueError, IndexError):
                pass
        self._property = _Property(property_id, zone_name, today)
        return self._property

    def _plan(
        self, connection_settings: GA4ConnectionSettings, prop: _Property
    ) -> dict[Report, tuple[date, date]]:
        options = self.context.options
        explicit_start = _option_date(options, "start_date")
        end = min(_option_date(options, "end_date") or prop.today, prop.today)
        history = options.get("history_days") or self.history_days
        plan: dict[Report, tuple[date, date]] = {}
        for report in REPORTS:
            if explicit_start is not None:
                start = explicit_start
            else:
                through = self._cursor_through(report, prop.property_id)
                if through is None:
                    start = prop.today - timedelta(days=history - 1)
                else:
                    start = min(through, prop.today) - timedelta(
                        days=connection_settings.lookback_days
                    )
            if start > end:
                raise ValueError(
                    f"start_date {start.isoformat()} is after end_date {end.isoformat()}"
                    f" (today is {prop.today.isoformat()} in the property's time zone"
                    f" {prop.time_zone})"
                )
            plan[report] = (start, end)
        self.context.log.info(
            "google_analytics: "
            + "; ".join(
                f"{r.stream} {s.isoformat()}..{e.isoformat()}" for r, (s, e) in plan.items()
            )
            + f" ({prop.time_zone})"
        )
        return plan

    def _cursor(self, report: Report) -> dict[str, Any] | None:
        workspace = self.context.workspace
        with self.context.warehouse.tenant(workspace.id, actor=self.context.actor) as db:
            return load_cursor(db, PROVIDER, report.stream)

    def _cursor_through(self, report: Report, property_id: str) -> date | None:
        return _synced_through(self._cursor(report), property_id)

    def _advance_cursor(
        self, db: DbConnection, report: Report, prop: _Property, through: date
    ) -> None:
        """Record, in the caller's transaction, that `report` has been read through
        `through` (never moves backwards)."""
        current = _synced_through(load_cursor(db, PROVIDER, report.stream), prop.property_id)
        if current is not None and current >= through:
            return
        save_cursor(
            db,
            PROVIDER,
            report.stream,
            {
                "property_id": prop.property_id,
                "synced_through": through.isoformat(),
                "time_zone": prop.time_zone,
            },
        )

    def _resume_note(self) -> str:
        prop = self._property
        if prop is None:
            return "Nothing was read; the next sync starts over."
        parts = []
        for report in REPORTS:
            through = self._cursor_through(report, prop.property_id)
            parts.append(
                f"{report.stream} through {through.isoformat()}"
                if through
                else f"{report.stream} not yet"
            )
        return (
            "What was read is stored (" + ", ".join(parts) + "); the next sync resumes from there."
        )

    # --- reading ----------------------------------------------------------------------------

    def _sync_window(
        self,
        report: Report,
        prop: _Property,
        first: date,
        last: date,
        progress: _Progress,
        errors: list[str],
    ) -> WriteStats:
        """Read every page of `report` over first..last, then write its points and its
        cursor in one transaction (the window is the unit of commit: see the module doc)."""
        fetched_at = datetime.now(UTC)
        rows = list(self._rows(report, first, last, progress, errors))
        stats = WriteStats()
        size = self.effective_batch_size()
        batch: list[KPIData] = []
        workspace = self.context.workspace
        with self.context.warehouse.tenant(workspace.id, actor=self.context.actor) as db:
            for row in rows:
                batch += self.transform(row)
                if len(batch) >= size:
                    stats += write_kpis(db, batch, fetched_at=fetched_at)
                    batch = []
            stats += write_kpis(db, batch, fetched_at=fetched_at)
            self._advance_cursor(db, report, prop, last)
        return stats

    def _rows(
        self, report: Report, first: date, last: date, progress: _Progress, errors: list[str]
    ) -> Iterator[GA4Row]:
        """Every row of `report` over first..last, one validated page at a time."""
        assert self._property is not None
        offset = 0
        while True:
            page = self._run_report(
                self._property.property_id,
                {
                    "dateRanges": [{"startDate": first.isoformat(), "endDate": last.isoformat()}],
                    "dimensions": [{"name": name} for name in report.dimensions],
                    "metrics": [{"name": name} for name in GA4_METRICS],
                    # A stable order, so that offsets address the same rows page after page.
                    "orderBys": [
                        {"dimension": {"dimensionName": name}} for name in report.dimensions
                    ],
                    "limit": str(self.page_size),
                    "offset": str(offset),
                    "returnPropertyQuota": True,
                },
            )
            progress.requests += 1
            self._check_headers(report, page)
            if page.metadata.subject_to_thresholding:
                self.context.log.info(
                    f"google_analytics: {report.stream} {first}..{last} is subject to"
                    " thresholding (GA4 withholds rows with few users)"
                )
            for raw in page.rows:
                progress.rows += 1
                row = self._validated(report, raw, errors)
                if row is None:
                    progress.rejected += 1
                else:
                    yield row
            offset += len(page.rows)
            if not page.rows or offset >= page.row_count:
                break
        quota = page.property_quota
        if quota is not None and quota.tokens_per_hour is not None:
            self.context.log.debug(
                f"google_analytics: {quota.tokens_per_hour.remaining} tokens left this hour"
            )

    def _validated(self, report: Report, raw: Any, errors: list[str]) -> GA4Row | None:
        try:
            row = ReportRow.model_validate(raw)
            dims = [v.value for v in row.dimension_values]
            metrics = [v.value for v in row.metric_values]
            if len(dims) != len(report.dimensions) or len(metrics) != len(GA4_METRICS):
                raise ValueError(
                    f"{len(dims)} dimension and {len(metrics)} metric values, expected"
                    f" {len(report.dimensions)} and {len(GA4_METRICS)}"
                )
            fields: dict[str, Any] = dict(zip(GA4_METRICS.values(), metrics, strict=True))
            fields["day"] = dims[0]
            if report is BY_DATE_CHANNEL:
                fields["channel"] = dims[1]
            return GA4Row.model_validate(fields)
        except (ValidationError, ValueError) as exc:
            if len(errors) < MAX_ERRORS:
                errors.append(f"{report.stream} row {_describe_row(raw)}: {_reason(exc)}")
            return None

    def _check_headers(self, report: Report, page: RunReportResponse) -> None:
        dims = [h.name for h in page.dimension_headers]
        metrics = [h.name for h in page.metric_headers]
        if page.rows and (dims != list(report.dimensions) or metrics != list(GA4_METRICS)):
            raise ProviderError(
                PROVIDER,
                f"runReport answered with dimensions {dims} and metrics {metrics};"
                f" expected {list(report.dimensions)} and {list(GA4_METRICS)}",
            )

    def _run_report(self, property_id: str, body: dict[str, Any]) -> RunReportResponse:
        assert self._api is not None, "connect() first"
        data = self._api.http.post_json(f"/v1beta/properties/{property_id}:runReport", json=body)
        try:
            return RunReportResponse.model_validate(data)
        except ValidationError as exc:
            raise ProviderError(
                PROVIDER, f"runReport returned a response that is not a report: {_reason(exc)}"
            ) from None

    # --- settings ---------------------------------------------------------------------------

    def _settings(self) -> GA4ConnectionSettings:
        connection = self.context.connection
        try:
            return GA4ConnectionSettings.model_validate(connection.settings)
        except ValidationError as exc:
            raise ValueError(
                f"the google_analytics connection {connection.name!r} of workspace"
                f" {connection.workspace_id!r} has unusable settings: {_reason(exc)}"
                ' (expected {"property_id": "123456789", "lookback_days": 3})'
            ) from None

    def _validate_options(self) -> None:
        for name in ("start_date", "end_date"):
            _option_date(self.context.options, name)
        history = self.context.options.get("history_days")
        if history is not None and history < 1:
            raise ValueError(f"history_days must be at least 1, got {history}")


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


def _synced_through(cursor: dict[str, Any] | None, property_id: str) -> date | None:
    cursor = cursor or {}
    if cursor.get("property_id") != property_id or not cursor.get("synced_through"):
        return None  # never synced, or the connection now names another property
    return date.fromisoformat(cursor["synced_through"])


def _windows(start: date, end: date, size: int) -> Iterator[tuple[date, date]]:
    while start <= end:
        last = min(end, start + timedelta(days=size - 1))
        yield start, last
        start = last + timedelta(days=1)


def _option_date(options: dict[str, Any], name: str) -> date | None:
    value = options.get(name)
    if value in (None, ""):
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{name} {value!r} is not a date in the form YYYY-MM-DD") from None


def _describe_row(raw: Any) -> str:
    try:
        values = [v.get("value") for v in raw.get("dimensionValues", [])]
    except AttributeError:
        return "(not an object)"
    return "[" + ", ".join(str(v) for v in values) + "]"


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()[:3]
        )
    return str(exc)
