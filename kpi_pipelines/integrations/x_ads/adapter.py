"""The X Ads adapter: the ad metrics of kpi-definitions.md per campaign and for the account,
per day of the account's time zone, from X Ads API v12's stats.

The report engine reads it (windows, cursors, the 3-day lookback, ids in lists of 20, async
jobs and their splits, quota stops: engines/report.py); this module is what X does its own
way:

- OAuth 1.0a user context, signed by authlib (the kit's oauth1.py) with the connection's
  access token and secret and the deployment's app (`KPI_X_ADS_CONSUMER_KEY`/`_SECRET`,
  unless the connection names its own). Tokens do not expire: a 401 means the user revoked
  the app (or the secrets are wrong), and the sync fails saying to reconnect.
- The probe is `GET accounts/:id`: the account's time zone, and today there by X's clock
  (its Date header). An account the token may not use is X's 403 ACCOUNT_NOT_FOUND, told
  as a wrong `account_id` rather than as a bad token.
- Campaigns are listed whole, deleted ones included (`with_deleted=true`): their past spend
  counts in the account's days, and a point names its campaign.
- Stats: `entity=CAMPAIGN`, at most 20 ids and 7 days per synchronous request, the window
  as the account's midnights at today's UTC offset (X's rule for day windows), whole hours;
  a longer window runs as an async job (up to 90 days) whose result is a gzip file
  downloaded without credentials from X's file host. Metrics arrive as per-day arrays, null
  where a campaign had nothing; money in micros of the campaign's currency.
- X has no account-level spend, clicks or conversions (entity=ACCOUNT has engagement
  only), so the account's day is the sum of its campaigns' days: each day's rows are merged
  into one (the report's row key is the day) and `transform` writes every campaign's
  points and their total, ratios from the summed parts.
- Conversions: the WEB_CONVERSION group's events the connection names (default purchases),
  `metric` (after an engagement or a view) and its `sale_amount`; never the item counts
  (`order_quantity`) nor `assisted` conversions.
- Rate limits: every answer says `x-rate-limit-remaining` and `-reset` (epoch seconds); a
  429 waits until the reset when that is within `backoff_max_seconds`, else the sync stops
  cleanly, saying when the window returns (the engine keeps what it read).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, ClassVar

import httpx
from pydantic import PrivateAttr

from kpi_pipelines import settings
from kpi_pipelines.integrations.shared.ad_metrics import AdDay, ad_points
from kpi_pipelines.integrations.shared.engines.report import (
    Entities,
    JobState,
    JobStatus,
    Query,
    Report,
    ReportAdapter,
    ReportScope,
)
from kpi_pipelines.integrations.shared.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRequestError,
)
from kpi_pipelines.integrations.shared.http import ProviderHttpClient, RetryDecision, provider_now
from kpi_pipelines.integrations.shared.money import DayRates, day_rates
from kpi_pipelines.integrations.shared.oauth1 import OAuth1Credentials
from kpi_pipelines.integrations.shared.paging import OnePage, Page, PageRequest, PageToken
from kpi_pipelines.integrations.shared.validation import validated_settings
from kpi_pipelines.integrations.x_ads.types import (
    XAccount,
    XAdsConnectionSettings,
    XCampaign,
    XDay,
    XJob,
    XStats,
)
from kpi_pipelines.models import KPIData

PROVIDER = "x_ads"
DEFAULT_BASE_URL = "https://ads-api.x.com"
DEFAULT_FILE_BASE_URL = "https://ton.twimg.com"  # where async job results are
VERSION = "12"
APP_VARIABLES = {
    "consumer_key": "KPI_X_ADS_CONSUMER_KEY",
    "consumer_secret": "KPI_X_ADS_CONSUMER_SECRET",
}
METRIC_GROUPS = "ENGAGEMENT,BILLING,WEB_CONVERSION"
JOB_STATUS = {
    "QUEUED": JobStatus.RUNNING,
    "PROCESSING": JobStatus.RUNNING,
    "UPLOADING": JobStatus.RUNNING,
    "SUCCESS": JobStatus.DONE,
    "FAILED": JobStatus.FAILED,
    "CANCELLED": JobStatus.FAILED,
}
MICROS = Decimal(1_000_000)
_CAMPAIGN = "campaign:"  # a merged day row's key for one campaign's day


def classify_x_response(response: httpx.Response) -> RetryDecision | None:
    """X's 429 says when its 15-minute window turns (`x-rate-limit-reset`): wait until then
    (or stop the sync when that is beyond the client's patience)."""
    reset = response.headers.get("x-rate-limit-reset", "").strip()
    if response.status_code != 429 or not reset.isdigit():
        return None
    return RetryDecision(retry=True, quota_reset_at=datetime.fromtimestamp(int(reset), UTC))


class XAdsAdapter(ReportAdapter):
    """Daily ad metrics from the X Ads API (see the module)."""

    provider: ClassVar[str] = PROVIDER

    base_url: str | None = None  # default: KPI_X_ADS_BASE_URL, else X's
    file_base_url: str | None = None  # default: KPI_X_ADS_FILE_BASE_URL, else X's file host
    timeout_seconds: float = 60.0
    max_attempts: int = 6
    backoff_base_seconds: float = 0.5
    # A 429 whose window turns later than this ends the sync cleanly (resumed next time).
    backoff_max_seconds: float = 120.0
    request_budget: int | None = None

    _http: ProviderHttpClient | None = PrivateAttr(default=None)
    _valid: XAdsConnectionSettings | None = PrivateAttr(default=None)
    _zone: str = PrivateAttr(default="UTC")  # the account's, from the probe
    _rates: dict[tuple[str, date], float] = PrivateAttr(default_factory=dict)

    def check_connection(self) -> None:
        """Validate the settings and read the credentials (access to the account is proven
        by the probe, the sync's first request)."""
        self.check_report_options()
        self._settings()
        self._client()

    def disconnect(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        self._valid = None
        self._rates.clear()
        super().disconnect()

    def request_stats(self) -> dict[str, int | float]:
        return self._http.stats.as_metadata() if self._http is not None else {}

    # --- the report engine's hooks -------------------------------------------------------

    def probe(self) -> ReportScope:
        """The account's time zone, and today there by X's clock."""
        response = self._get(f"/{VERSION}/accounts/{self._account()}")
        account = XAccount.model_validate(_data(response.json(), "the account"))
        self._zone = account.timezone
        return ReportScope.in_zone(
            PROVIDER,
            identity={"account_id": account.id},
            time_zone=account.timezone,
            label=f"X Ads account {account.id}",
            now=provider_now(response),
        )

    def lookback_days(self, report: Report) -> int:
        return self._settings().lookback_days

    def entity_paginator(self, entities: Entities) -> PageToken:
        return PageToken("cursor")

    def list_entities(
        self, entities: Entities, scope: ReportScope, request: PageRequest
    ) -> Page[Any]:
        params = {"count": 1000, "with_deleted": "true", **request.query}
        body = self._get(f"/{VERSION}/accounts/{self._account()}/campaigns", params).json()
        data = _data(body, "a campaigns page")
        if not isinstance(data, list):
            raise ProviderError(PROVIDER, "X Ads answered a campaigns page without a list")
        return Page(items=data, next_token=body.get("next_cursor"))

    def paginator(self, report: Report) -> OnePage:
        return OnePage()

    def fetch_page(
        self, report: Report, scope: ReportScope, query: Query, request: PageRequest
    ) -> Page[Any]:
        """A synchronous stats request, or a finished job's file; spread into one raw row
        per campaign and day with delivery."""
        if query.job is not None and query.job.result:
            body = self._client().download_json(query.job.result, gzipped=True)
        else:
            body = self._get(f"/{VERSION}/stats/accounts/{self._account()}", _params(scope, query))
            body = body.json()
        stats = XStats.model_validate(body)
        if stats.time_series_length != query.window.days:
            raise ProviderError(
                PROVIDER,
                f"X Ads answered {stats.time_series_length} day(s) for the"
                f" {query.window.days}-day window {query.describe()}",
            )
        return Page(items=self._days(stats, query))

    def validate(self, report: Report, raw: Any) -> dict[str, Any]:
        """One campaign's day, as a day row holding it: rows of one day are merged (the
        report's row key), so that day's total is theirs."""
        day = XDay.model_validate(raw)
        return {"day": day.day, f"{_CAMPAIGN}{day.campaign_id}": day}

    def describe(self, raw: Any) -> str:
        if isinstance(raw, Mapping):
            return f"campaign {raw.get('campaign_id')} on {raw.get('day')}"
        return "?"

    def start_job(self, report: Report, scope: ReportScope, query: Query) -> str:
        body = self._request(
            "POST", f"/{VERSION}/stats/jobs/accounts/{self._account()}", _params(scope, query)
        ).json()
        return XJob.model_validate(_data(body, "a new job")).id_str

    def poll_job(self, report: Report, scope: ReportScope, job_id: str) -> JobState:
        path = f"/{VERSION}/stats/jobs/accounts/{self._account()}"
        body = self._client().get_json(path, params={"job_ids": job_id}, cacheable=False)
        jobs = [XJob.model_validate(job) for job in _data(body, "its jobs") or []]
        job = next((j for j in jobs if j.id_str == job_id), None)
        if job is None:
            return JobState(job_id, JobStatus.FAILED, detail="X Ads no longer lists it")
        status = JOB_STATUS[job.status]
        if status is JobStatus.DONE and not job.url:
            return JobState(job_id, JobStatus.FAILED, detail="succeeded without a result file")
        return JobState(job_id, status, result=job.url, detail=job.status.lower())

    def transform(self, raw: Mapping[str, Any]) -> list[KPIData]:
        """Each campaign's points of the day, and the account's: the sum of its campaigns."""
        day: date = raw["day"]
        campaigns: list[XDay] = [v for k, v in raw.items() if k.startswith(_CAMPAIGN)]
        events = self._settings().conversion_events
        rates = self._day_rates({(self._currency(c.campaign_id), day) for c in campaigns})
        points: list[KPIData] = []
        totals: dict[str, AdDay] = {}
        for campaign in campaigns:
            currency = self._currency(campaign.campaign_id)
            figures = _ad_day(campaign, events)
            totals[currency] = _plus(totals[currency], figures) if currency in totals else figures
            points += self._points(figures, currency, rates, {"campaign_id": campaign.campaign_id})
        # X keeps an account in one currency; campaigns in two would have no sum to give.
        if len(totals) == 1:
            ((currency, total),) = totals.items()
            points += self._points(total, currency, rates, {})
        return points

    # --- X's quirks ----------------------------------------------------------------------

    def _points(
        self, figures: AdDay, currency: str, rates: DayRates, dimensions: Mapping[str, str]
    ) -> list[KPIData]:
        return ad_points(
            figures,
            currency=currency,
            rates=rates,
            source=PROVIDER,
            workspace_id=self.context.workspace.id,
            dimensions=dimensions,
            metadata={"granularity": "day", "time_zone": self._zone},
        )

    def _days(self, stats: XStats, query: Query) -> list[dict[str, Any]]:
        """X's per-day arrays as one raw row per (campaign, day) with delivery."""
        events = self._settings().conversion_events
        asked = set(query.ids)
        rows = []
        for entry in stats.data:
            if entry.id not in asked or not entry.id_data:
                continue
            metrics = entry.id_data[0].get("metrics") or {}
            for n, day in enumerate(query.days()):
                row = {
                    "day": day.isoformat(),
                    "campaign_id": entry.id,
                    "impressions": _at(metrics.get("impressions"), n),
                    "clicks": _at(metrics.get("clicks"), n),
                    "billed_charge_local_micro": _at(metrics.get("billed_charge_local_micro"), n),
                    "conversions": {
                        event: {
                            field: _at(conversion.get(field), n)
                            for field in ("metric", "sale_amount")
                        }
                        for event in events
                        if isinstance(conversion := metrics.get(f"conversion_{event}"), dict)
                    },
                }
                if row["impressions"] or row["billed_charge_local_micro"]:
                    rows.append(_without_nulls(row))
        return rows

    def _currency(self, campaign_id: str) -> str:
        campaign = self.entities.get("campaigns", campaign_id)
        if not isinstance(campaign, XCampaign):
            raise ProviderError(PROVIDER, f"X Ads reported campaign {campaign_id}, not listed")
        return campaign.currency

    def _day_rates(self, needed: set[tuple[str, date]]) -> DayRates:
        """The rates of `needed` into the workspace's reporting currency, read once a sync."""
        workspace = self.context.workspace
        missing = {(c, d) for c, d in needed if (c, d) not in self._rates}
        if missing:
            with self.context.warehouse.tenant(workspace.id, actor=self.context.actor) as db:
                self._rates |= day_rates(db, workspace.reporting_currency, missing).rates
        return DayRates(workspace.reporting_currency.upper(), self._rates)

    def _settings(self) -> XAdsConnectionSettings:
        if self._valid is None:
            self._valid = validated_settings(self.context.connection, XAdsConnectionSettings)
        return self._valid

    def _account(self) -> str:
        return self._settings().account_id

    def _client(self) -> ProviderHttpClient:
        if self._http is None:
            credentials = OAuth1Credentials.from_connection(self.context.connection, APP_VARIABLES)
            base = settings.provider_base_url(PROVIDER, DEFAULT_BASE_URL, self.base_url)
            files = settings.operator_url(
                self.file_base_url
                or os.environ.get("KPI_X_ADS_FILE_BASE_URL")
                or DEFAULT_FILE_BASE_URL,
                "KPI_X_ADS_FILE_BASE_URL",
            )
            self._http = ProviderHttpClient(
                PROVIDER,
                base,
                auth=credentials.auth(),
                timeout=self.timeout_seconds,
                max_attempts=self.max_attempts,
                backoff_base=self.backoff_base_seconds,
                backoff_max=self.backoff_max_seconds,
                request_budget=self.request_budget,
                classify=classify_x_response,
                file_origins=[files],
                limits=self.spec.limits.response(),
            )
        return self._http

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> httpx.Response:
        return self._request("GET", path, params)

    def _request(
        self, method: str, path: str, params: Mapping[str, Any] | None = None
    ) -> httpx.Response:
        """One call; X's 403 ACCOUNT_NOT_FOUND told as the account_id setting it is."""
        try:
            return self._client().request(method, path, params=params)
        except ProviderAuthError as exc:
            if exc.status == 403 and "ACCOUNT_NOT_FOUND" in exc.detail:
                raise ProviderRequestError(
                    PROVIDER,
                    f"X Ads has no account {self._account()!r} that this token may use: check"
                    " the connection's account_id (the ads account id in Ads Manager's URL)"
                    " and that the user who authorized the app can use that account",
                    status=403,
                ) from None
            raise


def _params(scope: ReportScope, query: Query) -> dict[str, str]:
    start, end = query.span(scope, todays_offset=True)
    return {
        "entity": "CAMPAIGN",
        "entity_ids": ",".join(query.ids),
        "start_time": start.isoformat(),
        "end_time": end.isoformat(),
        "granularity": "DAY",
        "metric_groups": METRIC_GROUPS,
        "placement": "ALL_ON_TWITTER",
    }


def _data(body: Any, what: str) -> Any:
    """The `data` of an answer (X's envelope: data, request, next_cursor)."""
    if not isinstance(body, dict) or "data" not in body:
        raise ProviderError(PROVIDER, f"X Ads answered {what} without its data")
    return body["data"]


def _at(series: Any, n: int) -> Any:
    return series[n] if isinstance(series, list) and n < len(series) else None


def _without_nulls(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if v is not None}
    out["conversions"] = {
        event: {k: v for k, v in fields.items() if v is not None}
        for event, fields in row["conversions"].items()
    }
    return out


def _ad_day(day: XDay, events: Sequence[str]) -> AdDay:
    chosen = [day.conversions[e] for e in events if e in day.conversions]
    return AdDay(
        day.day,
        spend=Decimal(day.billed_charge_local_micro) / MICROS,
        impressions=day.impressions,
        clicks=day.clicks,
        conversions=Decimal(sum(c.metric for c in chosen)),
        conversion_value=Decimal(sum(c.sale_amount for c in chosen)) / MICROS,
    )


def _plus(a: AdDay, b: AdDay) -> AdDay:
    return AdDay(
        a.day,
        spend=a.spend + b.spend,
        impressions=a.impressions + b.impressions,
        clicks=a.clicks + b.clicks,
        conversions=a.conversions + b.conversions,
        conversion_value=a.conversion_value + b.conversion_value,
    )
