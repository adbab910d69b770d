"""The Meta Ads adapter: daily ad metrics from the Marketing API's insights, per campaign and
for the ad account.

The report engine reads it (entities, windows in the account's time zone, cursors, the
28-day lookback, async jobs split on failure or deadline, quota stops: engines/report.py);
this module is what Meta does its own way:

- The probe reads the account (`GET act_<id>?fields=name,currency,timezone_name`): its days
  are its time zone's (today is the day there by Meta's clock, its Date header), its money
  its currency's.
- Campaigns are listed with ARCHIVED ones too (Meta leaves them out by default, and an
  archived campaign still has its past days).
- Insights are async report runs (`POST act_<id>/insights` -> `report_run_id`, polled by
  `async_status`, the result read from `<id>/insights`), one per window and level, paged by
  `paging.next`. Rows are days (`time_increment=1`); a campaign with no delivery has none.
- Conversions are the connection's action types in order of preference, the first present
  in a row (default `omni_purchase`, else `purchase`): never a sum, as one purchase shows
  under several overlapping types. Their value comes from `action_values` the same way.
- Spend and value are strings in major units of the account's currency, converted with the
  day's rate (kit: ad_metrics, money).
- Throttles are HTTP 400 with codes 4, 17, 613, 80000, 80004: retried, waiting what the
  usage headers say (`estimated_time_to_regain_access` minutes, `reset_time_duration`
  seconds); a wait longer than the adapter's patience ends the sync cleanly, saying when
  access returns. Code 190 (an expired or invalidated token) asks to reconnect.
"""

from __future__ import annotations

import email.utils
import json
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any, ClassVar, TypeVar

import httpx
from pydantic import BaseModel, PrivateAttr, ValidationError

from kpi_pipelines import settings
from kpi_pipelines.integrations.meta_ads.types import (
    AdAccountNode,
    GraphErrorEnvelope,
    GraphList,
    InsightRow,
    MetaAdsSettings,
    ReportRun,
)
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
from kpi_pipelines.integrations.shared.errors import ProviderAuthError, ProviderError
from kpi_pipelines.integrations.shared.http import ProviderHttpClient, RetryDecision
from kpi_pipelines.integrations.shared.money import DayRates, day_rates
from kpi_pipelines.integrations.shared.paging import NextUrl, Page, PageRequest, Paginator
from kpi_pipelines.integrations.shared.secrets import read_secret
from kpi_pipelines.integrations.shared.validation import describe_validation, validated_settings
from kpi_pipelines.models import KPIData

PROVIDER = "meta_ads"
DEFAULT_BASE_URL = "https://graph.facebook.com"
THROTTLE_CODES = frozenset({4, 17, 613, 80000, 80003, 80004, 80014})
TOKEN_CODES = frozenset({102, 104, 190})  # no, an expired or an invalidated token
TRANSIENT_CODES = frozenset({1, 2})
JOB_STATUS = {
    "Job Not Started": JobStatus.RUNNING,
    "Job Started": JobStatus.RUNNING,
    "Job Running": JobStatus.RUNNING,
    "Job Completed": JobStatus.DONE,
    "Job Failed": JobStatus.FAILED,
    "Job Skipped": JobStatus.FAILED,
}
_LONGEST_WAIT = 24 * 3600.0
M = TypeVar("M", bound=BaseModel)  # a usage header saying more is not believed


class MetaAdsAdapter(ReportAdapter):
    """The Marketing API over the shared HTTP layer, with the connection's token."""

    provider: ClassVar[str] = PROVIDER

    api_version: str = "v24.0"
    page_size: int = 500  # rows per insights page
    max_attempts: int = 6
    backoff_base_seconds: float = 0.5
    # The longest a throttle is waited out within a sync; longer ends the sync cleanly.
    throttle_patience_seconds: float = 120.0
    request_budget: int | None = None
    job_poll_seconds: float = 1.0  # Meta's small report runs end within seconds

    _http: ProviderHttpClient | None = PrivateAttr(default=None)
    _scope: ReportScope | None = PrivateAttr(default=None)
    _currency: str = PrivateAttr(default="")
    # Validated once per run: transform() needs them for every row.
    _options: MetaAdsSettings | None = PrivateAttr(default=None)
    _rates: dict[tuple[str, date], float] = PrivateAttr(default_factory=dict)

    # --- connect / disconnect -------------------------------------------------------------

    def check_connection(self) -> None:
        """Validate the settings and prove the token on the account (the probe)."""
        self._options = None  # read afresh for every run
        self.check_report_options()
        if not 1 <= self.page_size <= 5000:
            raise ValueError(f"page_size must be 1..5000, got {self.page_size}")
        self.probe()

    def request_stats(self) -> dict[str, int | float]:
        return self._http.stats.as_metadata() if self._http is not None else {}

    def disconnect(self) -> None:
        if self._http is not None:
            self._http.close()
        self._http, self._scope, self._options = None, None, None
        self._rates.clear()
        super().disconnect()

    # --- the report engine's hooks ---------------------------------------------------------

    def probe(self) -> ReportScope:
        account_id = self._settings().account_id
        response = self._client().request(
            "GET", f"act_{account_id}", params={"fields": "name,currency,timezone_name"}
        )
        account = _answer(AdAccountNode, response.content, f"act_{account_id}")
        self._currency = account.currency
        self._scope = ReportScope.in_zone(
            PROVIDER,
            identity={"account_id": account_id},
            time_zone=account.timezone_name,
            label=f"ad account act_{account_id}",
            now=_server_time(response),
        )
        return self._scope

    def entity_paginator(self, entities: Entities) -> Paginator:
        return NextUrl()

    def list_entities(
        self, entities: Entities, scope: ReportScope, request: PageRequest
    ) -> Page[Any]:
        params = {
            "fields": "id,name,status,effective_status",
            "effective_status": '["ACTIVE","PAUSED","ARCHIVED"]',
            "limit": self.page_size,
        }
        return self._page(request.url or f"act_{scope.identity['account_id']}/campaigns", params)

    def paginator(self, report: Report) -> Paginator:
        return NextUrl()

    def start_job(self, report: Report, scope: ReportScope, query: Query) -> str:
        span = {"since": query.first.isoformat(), "until": query.last.isoformat()}
        by_campaign = _by_campaign(report)
        body = self._client().post_json(
            f"act_{scope.identity['account_id']}/insights",
            data={
                "level": "campaign" if by_campaign else "account",
                "fields": ",".join((*(["campaign_id"] if by_campaign else []), *report.metrics)),
                "time_range": json.dumps(span),
                "time_increment": "1",
                "action_breakdowns": "action_type",
            },
        )
        run_id = body.get("report_run_id") if isinstance(body, Mapping) else None
        if not isinstance(run_id, str | int) or not str(run_id).isdigit():
            raise ProviderError(
                PROVIDER, f"a report run was created without a report_run_id: {body!r:.200}"
            )
        return str(run_id)

    def poll_job(self, report: Report, scope: ReportScope, job_id: str) -> JobState:
        body = self._client().get_json(job_id, cacheable=False)
        run = _answer(ReportRun, body, f"report run {job_id}")
        return JobState(
            id=run.id,
            status=JOB_STATUS[run.async_status],
            progress=run.async_percent_completion,
            detail=run.error_message
            or (run.async_status if run.async_status != "Job Completed" else None),
        )

    def fetch_page(
        self, report: Report, scope: ReportScope, query: Query, request: PageRequest
    ) -> Page[Any]:
        assert query.job is not None, "Meta's insights are read from report runs"
        page = self._page(
            request.url or f"{query.job.result or query.job.id}/insights", {"limit": self.page_size}
        )
        self._load_rates(page.items)
        return page

    def validate(self, report: Report, raw: Any) -> InsightRow:
        row = InsightRow.model_validate(raw)
        if (row.campaign_id is not None) != _by_campaign(report):
            raise ValueError(f"a {report.name} row with campaign_id {row.campaign_id!r}")
        return row

    def describe(self, raw: Any) -> str:
        if not isinstance(raw, Mapping):
            return "(not an object)"
        return f"[{raw.get('date_start')}, {raw.get('campaign_id', 'account')}]"

    def transform(self, raw: InsightRow) -> list[KPIData]:
        scope = self._scope
        assert scope is not None, "transform() runs inside sync()"
        options = self._settings()
        day = AdDay(
            raw.date_start,
            spend=raw.spend,
            impressions=raw.impressions,
            clicks=raw.clicks,
            conversions=raw.first(raw.actions, options.conversions),
            conversion_value=raw.first(raw.action_values, options.value_types),
        )
        return ad_points(
            day,
            currency=self._currency,
            rates=DayRates(self.context.workspace.reporting_currency.upper(), self._rates),
            source=PROVIDER,
            workspace_id=self.context.workspace.id,
            dimensions={"campaign_id": raw.campaign_id} if raw.campaign_id else {},
            metadata={
                "granularity": "day",
                "time_zone": scope.time_zone,
                "account_id": scope.identity["account_id"],
            },
        )

    # --- requests ---------------------------------------------------------------------------

    def _page(self, path: str, params: Mapping[str, Any]) -> Page[Any]:
        """One page of a Graph API list: a path with `params`, or a next link as it is."""
        absolute = path.startswith(("http://", "https://"))
        body = self._client().get_json(path, params=None if absolute else dict(params))
        listing = _answer(GraphList, body, httpx.URL(path).path)
        return Page(items=listing.data, next_url=listing.paging.next if listing.paging else None)

    def _load_rates(self, rows: list[Any]) -> None:
        """The day's rates the rows need, read once per sync (MissingFxRate names a gap)."""
        reporting = self.context.workspace.reporting_currency.upper()
        if self._currency == reporting:
            return
        needed = set()
        for raw in rows:
            try:
                day = date.fromisoformat(str(raw.get("date_start")))
            except (AttributeError, ValueError):
                continue  # a bad row is named by validate()
            if (self._currency, day) not in self._rates:
                needed.add((self._currency, day))
        if needed:
            context = self.context
            with context.warehouse.tenant(context.workspace.id, actor=context.actor) as db:
                self._rates |= day_rates(db, reporting, needed).rates

    def _settings(self) -> MetaAdsSettings:
        if self._options is None:
            self._options = validated_settings(
                self.context.connection,
                MetaAdsSettings,
                hint=' (expected {"account_id": "act_1234567890"})',
            )
        return self._options

    def _client(self) -> ProviderHttpClient:
        if self._http is None:
            token = read_secret(self.context.connection, "access_token")
            host = settings.provider_base_url(PROVIDER, DEFAULT_BASE_URL).rstrip("/")
            self._http = ProviderHttpClient(
                PROVIDER,
                f"{host}/{self.api_version}",
                headers={"Authorization": f"Bearer {token}"},
                secrets=[token],
                max_attempts=self.max_attempts,
                backoff_base=self.backoff_base_seconds,
                backoff_max=self.throttle_patience_seconds,
                request_budget=self.request_budget,
                classify=classify_graph_response,
                limits=self.spec.limits.response(),
            )
        return self._http


def _answer(model: type[M], body: Any, what: str) -> M:
    """A Graph API answer as `model`, or the provider's error naming what was asked."""
    try:
        if isinstance(body, bytes):
            return model.model_validate_json(body)
        return model.model_validate(body)
    except ValidationError as exc:
        raise ProviderError(
            PROVIDER, f"{what} answered an unexpected body: {describe_validation(exc)}"
        ) from None


def _server_time(response: httpx.Response) -> datetime | None:
    """Meta's own time (its Date header), for the account's today; None: ours."""
    try:
        moment = email.utils.parsedate_to_datetime(response.headers.get("date", ""))
    except (TypeError, ValueError, IndexError):
        return None
    return moment if moment.tzinfo is not None else None


def _by_campaign(report: Report) -> bool:
    return "campaign_id" in report.dimensions


def classify_graph_response(response: httpx.Response) -> RetryDecision | None:
    """Meta's verdicts, all sent as HTTP 400: a throttle is retried after what the usage
    headers say; an expired or invalidated token is the workspace's to reconnect (raised
    here: there is nothing to retry); 1 and 2 are Meta's own transient failures."""
    if response.status_code != 400:
        return None
    try:
        error = GraphErrorEnvelope.model_validate_json(response.content).error
    except ValidationError:
        return None
    if error.code in TOKEN_CODES:
        raise ProviderAuthError(
            PROVIDER, f"({error.code}/{error.error_subcode}) {error.message}", status=400
        )
    if error.code in THROTTLE_CODES:
        wait = regain_seconds(response.headers)
        return RetryDecision(retry=True, wait=wait or None)
    if error.code in TRANSIENT_CODES:
        return RetryDecision(retry=True)
    return None


def regain_seconds(headers: httpx.Headers) -> float:
    """How long the usage headers say access stays blocked: the business use cases'
    `estimated_time_to_regain_access` (minutes) and the account's `reset_time_duration`
    (seconds), the longest of them; 0 when none says."""
    waits = [0.0]
    for entries in _json_header(headers, "x-business-use-case-usage").values():
        for entry in entries if isinstance(entries, list) else []:
            waits.append(_number(entry, "estimated_time_to_regain_access") * 60)
    waits.append(_number(_json_header(headers, "x-ad-account-usage"), "reset_time_duration"))
    return min(max(waits), _LONGEST_WAIT)


def _json_header(headers: httpx.Headers, name: str) -> dict[str, Any]:
    try:
        value = json.loads(headers.get(name, "{}")[:65_536])
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _number(entry: Any, key: str) -> float:
    value = entry.get(key) if isinstance(entry, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return 0.0
    return max(0.0, min(float(value), _LONGEST_WAIT))
