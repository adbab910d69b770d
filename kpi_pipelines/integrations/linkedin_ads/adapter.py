"""The LinkedIn Ads adapter: daily ad metrics per campaign and per account from adAnalytics.

The report engine reads it (spec.py declares the reports, the campaigns that name the
points, 20 metrics a request, 30 days of lookback); this module is what LinkedIn does its
own way:

- Auth: OAuth 2.0 refresh tokens through the kit (`LINKEDIN`: www.linkedin.com's token
  endpoint, the operator's client `KPI_LINKEDIN_CLIENT_*`); LinkedIn says a refresh token is
  gone with `invalid_request`, which ends the sync with the reconnect message.
- Every request sends `LinkedIn-Version` (pinned: `LINKEDIN_VERSION`, or the operator's
  `KPI_LINKEDIN_VERSION`) and `X-Restli-Protocol-Version: 2.0.0`; a version LinkedIn has
  retired (426) fails the sync saying what to change.
- Queries are Rest.li 2.0: structure raw, URNs percent-encoded inside `List(...)`, built
  here by hand (an HTTP client's parameter encoding would escape the structure).
- Days are UTC days: LinkedIn accounts have no time zone, so "today" is the UTC date of
  LinkedIn's own clock (the probe's Date header).
- Campaign rows ask for the campaigns listed by the entity stream (100 a request, those
  whose run schedule meets the window), so an answer stays far below adAnalytics' 15,000
  elements (a cut answer would lose rows silently: one that reaches it fails the sync);
  the account's rows come from a second report by account, never from a sum of campaigns;
  a day LinkedIn answers nothing for had no activity: the account's sums are 0 that day.
- Money is a decimal string in the account's currency, converted to the workspace's
  reporting currency with the day's rate (the amount and currency kept in metadata).
- A 429 is retried with backoff (LinkedIn sends no Retry-After), except a spent daily limit
  (APPLICATION or MEMBER DAY), which stops the sync until midnight UTC.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
from pydantic import PrivateAttr, ValidationError

from kpi_pipelines.integrations.linkedin_ads.types import (
    AdAccount,
    AnalyticsElement,
    AnalyticsRow,
    Campaign,
    ElementsPage,
    LinkedInAdsSettings,
)
from kpi_pipelines.integrations.shared.ad_metrics import AdDay, ad_points
from kpi_pipelines.integrations.shared.engines.report import (
    Entities,
    Query,
    Report,
    ReportAdapter,
    ReportScope,
    Window,
)
from kpi_pipelines.integrations.shared.errors import ProviderError
from kpi_pipelines.integrations.shared.http import RetryDecision, provider_message, provider_now
from kpi_pipelines.integrations.shared.money import DayRates, day_rates
from kpi_pipelines.integrations.shared.oauth import OAuthAdapter
from kpi_pipelines.integrations.shared.oauth_flow import OAuthFlow
from kpi_pipelines.integrations.shared.paging import OnePage, Page, PageRequest, PageToken
from kpi_pipelines.integrations.shared.validation import describe_validation, validated_settings
from kpi_pipelines.models import KPIData
from kpi_pipelines.settings import provider_base_url

PROVIDER = "linkedin_ads"
DEFAULT_BASE_URL = "https://api.linkedin.com/rest"
LINKEDIN_VERSION = "202611"  # the Marketing API version this integration speaks
VERSION_VARIABLE = "KPI_LINKEDIN_VERSION"
VERSIONS_URL = "https://learn.microsoft.com/en-us/linkedin/marketing/versioning"
# LinkedIn's 3-legged OAuth (what `kpi-pipelines connect` runs, and every refresh): the
# client in the token request's body; refresh tokens last 365 days and do not rotate.
LINKEDIN = OAuthFlow(
    authorize_url="https://www.linkedin.com/oauth/v2/authorization",
    token_url="https://www.linkedin.com/oauth/v2/accessToken",
    client_variables={
        "client_id": "KPI_LINKEDIN_CLIENT_ID",
        "client_secret": "KPI_LINKEDIN_CLIENT_SECRET",
    },
    scopes=("r_ads", "r_ads_reporting"),
    authorize_url_variable="KPI_LINKEDIN_AUTHORIZE_URL",
    token_url_variable="KPI_LINKEDIN_TOKEN_URL",
    grant_gone=(("invalid_request", "The provided authorization grant or refresh token"),),
)
# LinkedIn metric -> AnalyticsRow field; the base every sync reads, then the conversions.
FIELDS = {
    "impressions": "impressions",
    "clicks": "clicks",
    "costInLocalCurrency": "cost",
    "externalWebsiteConversions": "external_website_conversions",
    "oneClickLeads": "one_click_leads",
    "conversionValueInLocalCurrency": "conversion_value",
}
BASE_METRICS = ("impressions", "clicks", "costInLocalCurrency")
# Campaigns that may have delivered (drafts never did; removed ones are gone).
CAMPAIGN_STATUSES = ("ACTIVE", "PAUSED", "ARCHIVED", "COMPLETED", "CANCELED")
_VERSION = re.compile(r"^\d{6}(\.\d{2})?$")


def api_version() -> str:
    """The LinkedIn-Version every request sends: the operator's, else the pinned one."""
    version = os.environ.get(VERSION_VARIABLE, "").strip() or LINKEDIN_VERSION
    if not _VERSION.match(version):
        raise ValueError(f"{VERSION_VARIABLE} must be a LinkedIn version YYYYMM, not {version!r}")
    return version


class LinkedInAdsAdapter(OAuthAdapter, ReportAdapter):
    """LinkedIn's Marketing API over the kit's HTTP layer and OAuth (the spec's flow)."""

    provider: ClassVar[str] = PROVIDER

    base_url: str | None = None  # default: KPI_LINKEDIN_ADS_BASE_URL, else LinkedIn's
    timeout_seconds: float = 60.0  # one HTTP request

    page_size: int = 500  # campaigns per search page (LinkedIn allows 1,000)
    max_attempts: int = 6
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 60.0
    request_budget: int | None = None  # requests one sync may send; None: no limit
    # adAnalytics answers at most this many elements, cutting the rest without a word.
    answer_cap: int = 15_000

    _account: AdAccount | None = PrivateAttr(default=None)
    _rates: DayRates | None = PrivateAttr(default=None)
    _rated_days: set[date] = PrivateAttr(default_factory=set)

    # --- connect / disconnect -------------------------------------------------------------

    def check_connection(self) -> None:
        """Validate the settings and the version, and prove the grant with one refresh."""
        self.check_report_options()
        settings = self._settings()
        if not 1 <= self.page_size <= 1000:
            raise ValueError(f"page_size must be 1..1000, got {self.page_size}")
        api = self._open_api(
            base_url=provider_base_url(PROVIDER, DEFAULT_BASE_URL, self.base_url),
            timeout=self.timeout_seconds,
            headers={"LinkedIn-Version": api_version(), "X-Restli-Protocol-Version": "2.0.0"},
            max_attempts=self.max_attempts,
            backoff_base=self.backoff_base_seconds,
            backoff_max=self.backoff_max_seconds,
            request_budget=self.request_budget,
            classify=classify_linkedin_response,
        )
        api.session.access_token()
        self.context.log.info(
            f"linkedin_ads: credentials accepted for ad account {settings.account_id}"
        )

    def disconnect(self) -> None:
        self._account = None
        self._rates = None
        self._rated_days.clear()
        super().disconnect()

    # --- the report engine's hooks ---------------------------------------------------------

    def probe(self) -> ReportScope:
        """The account (its currency) and LinkedIn's today: UTC, by LinkedIn's clock."""
        account_id = self._settings().account_id
        response = self._get(f"/adAccounts/{account_id}")
        try:
            self._account = AdAccount.model_validate_json(response.content)
        except ValidationError as exc:
            raise ProviderError(
                PROVIDER,
                f"ad account {account_id} is not an ad account: {describe_validation(exc, limit=3)}",
            ) from None
        return ReportScope.in_zone(
            PROVIDER,
            identity={"account_id": account_id},
            time_zone="UTC",
            label=f"LinkedIn ad account {account_id}",
            now=provider_now(response),
        )

    def lookback_days(self, report: Report) -> int:
        configured = self._settings().lookback_days
        return report.lookback_days if configured is None else configured

    def entity_paginator(self, entities: Entities) -> PageToken:
        return PageToken("pageToken")

    def list_entities(
        self, entities: Entities, scope: ReportScope, request: PageRequest
    ) -> Page[Any]:
        token = request.query.get("pageToken")
        path = (
            f"/adAccounts/{scope.identity['account_id']}/adCampaigns?q=search"
            f"&search=(status:(values:List({','.join(CAMPAIGN_STATUSES)})))"
            f"&pageSize={self.page_size}" + (f"&pageToken={quote(token, safe='')}" if token else "")
        )
        page = self._valid(ElementsPage, self._get(path), "the campaign search")
        return Page(items=page.elements, next_token=page.metadata.next_page_token)

    def report_ids(self, report: Report, scope: ReportScope, window: Window) -> Sequence[str]:
        """The listed campaigns whose run schedule meets the window (a day either side)."""
        first = datetime.combine(window.first - timedelta(days=1), time.min, UTC)
        last = datetime.combine(window.last + timedelta(days=2), time.min, UTC)
        campaigns: list[Campaign] = self.entities.all("campaigns")
        return sorted(c.id for c in campaigns if c.may_deliver(first, last))

    def paginator(self, report: Report) -> OnePage:
        return OnePage()

    def fetch_page(
        self, report: Report, scope: ReportScope, query: Query, request: PageRequest
    ) -> Page[Any]:
        metrics = [name for name in query.metrics if name in self._metrics()]
        if not metrics:
            return Page(items=[])  # a chunk of metrics this connection does not count
        account_id = scope.identity["account_id"]
        if report.ids_from:
            pivot, facet = "CAMPAIGN", "campaigns=" + _urns("sponsoredCampaign", query.ids)
        else:
            pivot, facet = "ACCOUNT", "accounts=" + _urns("sponsoredAccount", [account_id])
        path = (
            f"/adAnalytics?q=analytics&pivot={pivot}&timeGranularity=DAILY"
            f"&dateRange=(start:{_day(query.first)},end:{_day(query.last)})&{facet}"
            f"&fields=dateRange,pivotValues,{','.join(metrics)}"
        )
        page = self._valid(ElementsPage, self._get(path), f"adAnalytics {query.describe()}")
        if len(page.elements) >= self.answer_cap:
            raise ProviderError(
                PROVIDER,
                f"adAnalytics answered {len(page.elements):,} elements for {query.describe()},"
                f" its most: LinkedIn cuts a longer answer without saying so, so rows may be"
                " missing; lower window_days",
            )
        self._load_rates(query.days())
        if report.ids_from:
            return Page(items=page.elements)
        quiet = _quiet_days(page.elements, query, metrics, f"urn:li:sponsoredAccount:{account_id}")
        return Page(items=[*page.elements, *quiet])

    def validate(self, report: Report, raw: Any) -> AnalyticsRow:
        row = AnalyticsElement.model_validate(raw).row()
        if bool(row.campaign_id) != bool(report.ids_from):
            wanted = "a campaign" if report.ids_from else "the account"
            raise ValueError(f"a {report.name} row names {wanted}")
        return row

    def describe(self, raw: Any) -> str:
        try:
            start = raw["dateRange"]["start"]
            day = date(start["year"], start["month"], start["day"])
            return f"{str(raw['pivotValues'][0])[:80]} on {day.isoformat()}"
        except (KeyError, IndexError, TypeError, ValueError, OverflowError):
            return "(not an analytics element)"

    def transform(self, raw: AnalyticsRow) -> list[KPIData]:
        """One day of a campaign or of the account -> the kit's ad metrics; a metric the
        merged row lacks was in no element LinkedIn sent (no activity): 0."""
        assert self._account is not None and self._rates is not None, "inside sync()"
        settings = self._settings()
        counted = sum(getattr(raw, FIELDS[name]) or 0 for name in settings.conversions)
        day = AdDay(
            raw.day,
            spend=raw.cost or Decimal(0),
            impressions=raw.impressions or 0,
            clicks=raw.clicks or 0,
            conversions=Decimal(counted),
            conversion_value=raw.conversion_value or Decimal(0),
        )
        points = ad_points(
            day,
            currency=self._account.currency,
            rates=self._rates,  # loaded with the page: never a silent 1.0
            source=PROVIDER,
            workspace_id=self.context.workspace.id,
            dimensions={"campaign_id": raw.campaign_id} if raw.campaign_id else {},
            metadata={"granularity": "day", "time_zone": "UTC"},
        )
        if settings.conversion_value:
            return points
        return [p for p in points if p.metric not in ("conversion_value", "roas")]

    # --- LinkedIn's ways --------------------------------------------------------------------

    def _metrics(self) -> tuple[str, ...]:
        settings = self._settings()
        value = (settings.conversion_value,) if settings.conversion_value else ()
        return (*BASE_METRICS, *settings.conversions, *value)

    def _get(self, path: str) -> httpx.Response:
        """GET a Rest.li path; a retired LinkedIn-Version fails saying what to change."""
        assert self._api is not None, "connect() first"
        try:
            return self._api.http.request("GET", path)
        except ProviderError as exc:
            if exc.status != 426:
                raise
            raise ProviderError(
                PROVIDER,
                f"LinkedIn no longer serves the Marketing API version this sync asked for"
                f" (LinkedIn-Version {api_version()}: {exc}). LinkedIn retires each version"
                f" about a year after its release: set {VERSION_VARIABLE} to a version it"
                f" serves (YYYYMM, listed at {VERSIONS_URL}), or upgrade kpi-pipelines to a"
                " release that pins a current one",
                status=426,
            ) from None

    def _valid(self, model: Any, response: httpx.Response, what: str) -> Any:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise ProviderError(
                PROVIDER, f"{what} answered something else: {describe_validation(exc, limit=3)}"
            ) from None

    def _load_rates(self, days: Iterable[date]) -> None:
        """The day's rates into the reporting currency for the days not yet loaded."""
        assert self._account is not None
        missing = [day for day in days if day not in self._rated_days]
        if not missing:
            return
        context = self.context
        with context.warehouse.tenant(context.workspace.id, actor=context.actor) as db:
            rates = day_rates(
                db,
                context.workspace.reporting_currency,
                [(self._account.currency, day) for day in missing],
            )
        known = self._rates.rates if self._rates else {}
        self._rates = DayRates(rates.reporting, {**known, **rates.rates})
        self._rated_days.update(missing)

    def _settings(self) -> LinkedInAdsSettings:
        return validated_settings(
            self.context.connection,
            LinkedInAdsSettings,
            hint=' (expected {"account_id": "512345678"})',
        )


def _quiet_days(
    elements: Sequence[Any], query: Query, metrics: Sequence[str], urn: str
) -> list[dict[str, Any]]:
    """The account's days LinkedIn answered nothing for: it had no activity, so each of its
    sums is 0 that day (a dashboard shows 0 spend, not a gap; the ratios have no point)."""
    answered = set()
    for element in elements:
        try:
            start = element["dateRange"]["start"]
            answered.add(date(start["year"], start["month"], start["day"]))
        except (KeyError, TypeError, ValueError):
            continue  # not an element: validation names it
    zero = {name: "0" if FIELDS[name] in ("cost", "conversion_value") else 0 for name in metrics}
    return [
        {"pivotValues": [urn], "dateRange": {"start": _ymd(day), "end": _ymd(day)}, **zero}
        for day in query.days()
        if day not in answered
    ]


def _ymd(day: date) -> dict[str, int]:
    return {"year": day.year, "month": day.month, "day": day.day}


def _urns(kind: str, ids: Iterable[str]) -> str:
    """A Rest.li list of URNs, each percent-encoded (its colons are data, not structure)."""
    return "List(" + ",".join(quote(f"urn:li:{kind}:{i}", safe="") for i in ids) + ")"


def _day(day: date) -> str:
    return f"(year:{day.year},month:{day.month},day:{day.day})"


def classify_linkedin_response(response: httpx.Response) -> RetryDecision | None:
    """A spent daily limit (429 "... APPLICATION DAY limit ..." or MEMBER) stops the sync
    until midnight UTC; any other 429 is LinkedIn's short protection: the default backoff."""
    if response.status_code != 429 or " DAY limit" not in provider_message(response):
        return None
    tomorrow = provider_now(response).date() + timedelta(days=1)
    return RetryDecision(retry=False, quota_reset_at=datetime.combine(tomorrow, time.min, UTC))
