"""Two toy ad providers on the report engine: a declaration plus their quirks, nothing else.

`toy_ads` asks for synchronous stats (cut by the engine into 7 days, 2 campaigns and 2
metrics a request, merged per day and campaign); `toy_ad_jobs` asks for the same stats as
async jobs, whose result is a gzip file (or, with the connection setting
`job_result: "pages"`, pages). Both list their campaigns as an entity stream, so each point
names its campaign. Neither has a loop of its own: paging, chunking, polling, splitting,
windows, cursors and lookback are the engine's.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, PrivateAttr

from kpi_pipelines import settings
from kpi_pipelines.integrations.shared.connection_settings import ConnectionSettings
from kpi_pipelines.integrations.shared.engines.report import (
    Entities,
    JobState,
    JobStatus,
    Query,
    Report,
    ReportAdapter,
    ReportEngine,
    ReportRunConfig,
    ReportScope,
)
from kpi_pipelines.integrations.shared.http import ProviderHttpClient
from kpi_pipelines.integrations.shared.paging import (
    OnePage,
    Page,
    PageRequest,
    PageToken,
    Paginator,
)
from kpi_pipelines.integrations.shared.secrets import read_secret
from kpi_pipelines.integrations.shared.spec import AuthKind, ProviderSpec, SecretSpec
from kpi_pipelines.integrations.shared.validation import validated_settings
from kpi_pipelines.models import KPIData, day_timestamp

METRICS = ("impressions", "clicks", "spend_micro", "conversions")
# The toy's metric -> (catalog key, factor to the catalog's unit)
KPI_METRICS = {
    "impressions": ("impressions", 1.0),
    "clicks": ("clicks", 1.0),
    "spend_micro": ("ad_spend", 1e-6),
    "conversions": ("conversions", 1.0),
}
JOB_STATUS = {
    "PROCESSING": JobStatus.RUNNING,
    "SUCCESS": JobStatus.DONE,
    "FAILED": JobStatus.FAILED,
}


class ToyCampaign(BaseModel):
    id: str
    name: str
    status: str


class ToyStatsRow(BaseModel):
    day: date
    campaign_id: str
    impressions: int | None = None
    clicks: int | None = None
    spend_micro: int | None = None
    conversions: int | None = None


class ToyCampaignStats(BaseModel):
    id: str
    metrics: dict[str, list[int] | None]


class ToyStats(BaseModel):
    time_series_length: int
    data: list[ToyCampaignStats]
    next_cursor: str | None = None


class ToySettings(ConnectionSettings):
    job_result: Literal["file", "pages"] = "file"


CAMPAIGNS = Entities(
    "campaigns",
    ToyCampaign,
    dimension="campaign_id",
    metadata={"campaign_name": "name", "campaign_status": "status"},
)


class ToyAdsAdapter(ReportAdapter):
    provider: ClassVar[str] = "toy_ads"

    _http: ProviderHttpClient | None = PrivateAttr(default=None)
    _scope: ReportScope | None = PrivateAttr(default=None)

    def check_connection(self) -> None:
        self.check_report_options()
        self.probe()

    def probe(self) -> ReportScope:
        account = self._client().get_json("/v1/accounts/me")
        self._scope = ReportScope.in_zone(
            self.provider,
            identity={"account_id": account["id"]},
            time_zone=account["timezone"],
            label=f"toy ad account {account['id']}",
            now=datetime.fromisoformat(account["now"]),
        )
        return self._scope

    def entity_paginator(self, entities: Entities) -> Paginator:
        return PageToken("cursor")

    def list_entities(
        self, entities: Entities, scope: ReportScope, request: PageRequest
    ) -> Page[Any]:
        body = self._client().get_json("/v1/campaigns", params=dict(request.query))
        return Page(items=body["data"], next_token=body["next_cursor"])

    def paginator(self, report: Report) -> Paginator:
        return OnePage()

    def fetch_page(
        self, report: Report, scope: ReportScope, query: Query, request: PageRequest
    ) -> Page[Any]:
        start, end = query.span(scope)
        body = self._client().get_json(
            "/v1/stats",
            params={
                "entity_ids": ",".join(query.ids),
                "metrics": ",".join(query.metrics),
                "start_time": start.isoformat(),
                "end_time": end.isoformat(),
            },
        )
        return self._page(body, query)

    def validate(self, report: Report, raw: Any) -> ToyStatsRow:
        return ToyStatsRow.model_validate(raw)

    def transform(self, raw: ToyStatsRow) -> list[KPIData]:
        assert self._scope is not None
        points = []
        for field, (metric, factor) in KPI_METRICS.items():
            value = getattr(raw, field)
            if value is None:
                continue
            points.append(
                KPIData(
                    value=value * factor,
                    timestamp=day_timestamp(raw.day),
                    metadata={"granularity": "day", "time_zone": self._scope.time_zone},
                    source=self.provider,
                    workspace_id=self.context.workspace.id,
                    metric=metric,
                    dimensions={"campaign_id": raw.campaign_id},
                )
            )
        return points

    def request_stats(self) -> dict[str, int | float]:
        return self._http.stats.as_metadata() if self._http is not None else {}

    def disconnect(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        super().disconnect()

    # --- the toy's quirks -------------------------------------------------------------------

    def _page(self, body: Any, query: Query) -> Page[Any]:
        """Per-day arrays spread into one row per day and campaign (null: no delivery)."""
        stats = ToyStats.model_validate(body)
        rows = [
            {
                "day": day.isoformat(),
                "campaign_id": campaign.id,
                **{m: values[n] for m, values in campaign.metrics.items() if values is not None},
            }
            for campaign in stats.data
            if any(values is not None for values in campaign.metrics.values())
            for n, day in enumerate(query.days()[: stats.time_series_length])
        ]
        return Page(items=rows, next_token=stats.next_cursor)

    def _client(self) -> ProviderHttpClient:
        if self._http is None:
            key = read_secret(self.context.connection, "api_key")
            base = settings.provider_base_url(self.provider, "https://ads.toy.example")
            self._http = ProviderHttpClient(
                self.provider,
                base,
                headers={"Authorization": f"Bearer {key}"},
                backoff_base=0.01,
            )
        return self._http


class ToyAdJobsAdapter(ToyAdsAdapter):
    provider: ClassVar[str] = "toy_ad_jobs"

    job_poll_seconds: float = 0.01
    job_poll_max_seconds: float = 0.05

    def start_job(self, report: Report, scope: ReportScope, query: Query) -> str:
        start, end = query.span(scope)
        body = self._client().post_json(
            "/v1/jobs",
            json={
                "entity_ids": list(query.ids),
                "metrics": list(query.metrics),
                "start_time": start.isoformat(),
                "end_time": end.isoformat(),
            },
        )
        return str(body["id"])

    def poll_job(self, report: Report, scope: ReportScope, job_id: str) -> JobState:
        body = self._client().get_json(f"/v1/jobs/{job_id}", cacheable=False)
        return JobState(
            id=job_id,
            status=JOB_STATUS[body["status"]],
            result=body.get("url"),
            wait_seconds=body.get("retry_after"),
        )

    def cancel_job(self, report: Report, scope: ReportScope, job_id: str) -> None:
        self._client().request("DELETE", f"/v1/jobs/{job_id}")

    def paginator(self, report: Report) -> Paginator:
        return PageToken("cursor") if self._settings().job_result == "pages" else OnePage()

    def fetch_page(
        self, report: Report, scope: ReportScope, query: Query, request: PageRequest
    ) -> Page[Any]:
        job = query.job
        assert job is not None, "an async report's rows are a finished job's"
        if self._settings().job_result == "pages":
            body = self._client().get_json(
                f"/v1/jobs/{job.id}/rows", params=dict(request.query), cacheable=False
            )
        else:
            assert job.result is not None
            body = self._client().download_json(job.result, gzipped=True)
        return self._page(body, query)

    def _settings(self) -> ToySettings:
        return validated_settings(self.context.connection, ToySettings)


def toy_spec(
    key: str, description: str, adapter: type[ToyAdsAdapter], report: Report
) -> ProviderSpec:
    """A toy provider's spec: its report and the campaigns that name its points."""
    return ProviderSpec(
        key=key,
        display_name=key.replace("_", " ").capitalize(),
        description=description,
        adapter=adapter,
        auth=AuthKind.API_KEY,
        settings=ToySettings,
        secrets=(SecretSpec("api_key", "the toy platform's key"),),
        group="toys",
        kinds=frozenset({"python"}),
        metrics=("impressions", "clicks", "ad_spend", "conversions"),
        engine=ReportEngine(reports=(report,), entities=(CAMPAIGNS,)),
        run_config=ReportRunConfig,
    )


def stats_report(**declared: Any) -> Report:
    """The toy's one report: daily stats per campaign, restated for 3 days."""
    return Report(
        "stats",
        ("day", "campaign_id"),
        METRICS,
        lookback_days=3,
        ids_from="campaigns",
        row_key=("day", "campaign_id"),
        **declared,
    )
