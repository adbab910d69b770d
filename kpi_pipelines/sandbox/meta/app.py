"""The Graph API's Marketing routes on loopback, for a `MetaSandbox`:

    GET  /v{NN}.0/act_<id>?fields=name,currency,timezone_name     the account
    GET  /v{NN}.0/act_<id>/campaigns?fields=...&effective_status=[...]
    GET  /v{NN}.0/act_<id>/insights?fields=...&level=campaign&time_range={...}&time_increment=1
    POST /v{NN}.0/act_<id>/insights (the same, as a form)          -> {"report_run_id"}
    GET  /v{NN}.0/<report_run_id>                                   async_status, percent
    GET  /v{NN}.0/<report_run_id>/insights                          its rows, paged

The token comes as `access_token` (query or form) or `Authorization: Bearer|OAuth`. Lists
page with `limit` and `after`/`before` cursors; `paging.next` is the next page's whole URL
(with the `access_token` when the request had it in its query, as Meta's does) and is absent
on the last page. Campaign lists leave out ARCHIVED ones unless `effective_status` asks.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kpi_pipelines.sandbox.kit import CallBudget, Job, PageSize, TooManyJobs, Usage, json_response
from kpi_pipelines.sandbox.kit.ads import AdAccount, CampaignState
from kpi_pipelines.sandbox.meta import insights
from kpi_pipelines.sandbox.meta.graph import (
    GraphError,
    GraphErrors,
    expired_token,
    insights_throttle_header,
    invalid_parameter,
    throttled,
    unsupported_get,
    usage_headers,
)
from kpi_pipelines.sandbox.meta.sandbox import MetaSandbox

OLDEST_VERSION = 21  # older versions are refused (code 2635)
PAGE = PageSize(default=25, maximum=5000, over="clamp")
ACCOUNT_NODE_FIELDS = (
    "id",
    "account_id",
    "name",
    "currency",
    "timezone_name",
    "timezone_offset_hours_utc",
    "account_status",
)
CAMPAIGN_FIELDS = (
    "id",
    "account_id",
    "name",
    "status",
    "effective_status",
    "created_time",
    "updated_time",
    "start_time",
    "stop_time",
    "daily_budget",
)
ASYNC_STATUS = {
    "queued": "Job Not Started",
    "started": "Job Started",
    "running": "Job Running",
    "succeeded": "Job Completed",
    "failed": "Job Failed",
    "skipped": "Job Skipped",
}
_VERSION = re.compile(r"v(\d+)\.0")
_ERRORS = GraphErrors()


def _cursor(offset: int) -> str:
    return base64.b64encode(str(offset).encode()).decode().replace("=", "ZD")


def _offset(cursor: str) -> int:
    body = cursor
    while body.endswith("ZD"):
        body = body[:-2]
    body += "=" * (-len(body) % 4)
    try:
        return int(base64.b64decode(body, validate=True).decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise invalid_parameter("Invalid cursor") from None


def page(request: Request, params: dict[str, str], items: Sequence[Any]) -> dict[str, Any]:
    """One page of `items` as Meta pages a list (cursors, next and previous links)."""
    limit = (
        PAGE.resolve(int(params["limit"]) if params.get("limit", "").isdigit() else None)
        or PAGE.default
    )
    if "before" in params:
        end = _offset(params["before"])
        start = max(0, end - limit)
    else:
        start = _offset(params["after"]) if "after" in params else 0
    chunk = list(items[start : start + limit])
    if not chunk:
        return {"data": []}
    end = start + len(chunk)
    paging: dict[str, Any] = {"cursors": {"before": _cursor(start), "after": _cursor(end)}}
    base = request.url.remove_query_params(["after", "before"])  # access_token stays if given
    if end < len(items):
        paging["next"] = str(base.include_query_params(limit=limit, after=_cursor(end)))
    if start > 0:
        paging["previous"] = str(base.include_query_params(limit=limit, before=_cursor(start)))
    return {"data": chunk, "paging": paging}


class GraphApp:
    """Request handling: version, token, node, quota, then the node's or edge's answer."""

    def __init__(self, sandbox: MetaSandbox) -> None:
        self.sandbox = sandbox

    async def serve(self, request: Request) -> Response:
        node, edge = request.path_params["node"], request.path_params.get("edge")
        params = dict(request.query_params)
        if request.method == "POST":
            # A form body (urlencoded: read without python-multipart) adds to the query.
            params |= dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        api = edge or ("account" if node.startswith("act_") else "report_runs")

        async def handle() -> Response:
            try:
                return self._answer(request, params, node, edge)
            except GraphError as error:
                return error.response()

        return await self.sandbox.faults.serve(api, _ERRORS, handle)

    def _answer(
        self, request: Request, params: dict[str, str], node: str, edge: str | None
    ) -> Response:
        version = _VERSION.fullmatch(request.path_params["version"])
        if version is None or int(version[1]) < OLDEST_VERSION:
            raise GraphError(
                2635,
                f"(#2635) You are calling a deprecated version of the Ads API. Please update to the latest version: v{OLDEST_VERSION}.0.",
            )
        scopes = self._token(request, params)
        if node.startswith("act_"):
            account = self.sandbox.account(node.removeprefix("act_"))
            if account is None or account.account_id not in scopes:
                raise unsupported_get(node, request.method.lower())
            return self._account_answer(request, params, account, edge)
        try:
            job: Job[Any] = self.sandbox.jobs.look(node)
        except KeyError:
            raise unsupported_get(node) from None
        account = self.sandbox.account(job.owner)
        if account is None or job.owner not in scopes:
            raise unsupported_get(node)
        if edge is None:
            return self._ok(account, "ads_insights", _report_run(self.sandbox.jobs.poll(node)))
        if edge != "insights":
            raise _no_field(edge, "AdReportRun")
        if job.phase != "succeeded":
            raise invalid_parameter(
                f"Report run {node} is not complete: its async_status is {ASYNC_STATUS[job.phase]}"
            )
        return self._ok(account, "ads_insights", page(request, params, job.result or []))

    def _token(self, request: Request, params: dict[str, str]) -> frozenset[str]:
        value = params.get("access_token")
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        if value is None and scheme.lower() in ("bearer", "oauth"):
            value = credential.strip()
        checked = self.sandbox.tokens.check(value)
        if checked == "missing":
            raise GraphError(104, "An access token is required to request this resource.")
        if checked == "unknown":
            raise GraphError(190, "Invalid OAuth access token - Cannot parse access token")
        if checked == "expired":
            token = self.sandbox.tokens.get(value or "")
            ended = token.expires_at if token and token.expires_at else self.sandbox.clock.now()
            raise expired_token(463, ended.strftime("%A, %d-%b-%y %H:%M:%S UTC"))
        if checked == "revoked":
            raise expired_token(460)
        return checked.scopes

    def _charge(self, account: AdAccount, kind: str) -> dict[str, str]:
        """Count the call against the account's quotas; the throttle when one is spent."""
        key = account.account_id
        app = self.sandbox.app_load if kind == "ads_insights" else None
        if app is not None and not app.charge().allowed:
            raise throttled(4, key)
        score = self.sandbox.score.charge(key)
        if not score.allowed:
            raise throttled(17, key, seconds=score.seconds_to_regain)
        budget: CallBudget = (
            self.sandbox.insights_calls if kind == "ads_insights" else self.sandbox.management_calls
        )
        usage: Usage = budget.charge(key)
        if not usage.allowed:
            raise throttled(
                80000 if kind == "ads_insights" else 80004, key, minutes=usage.minutes_to_regain
            )
        headers = usage_headers(key, kind, usage, score)
        if kind == "ads_insights":
            headers |= insights_throttle_header(app.peek().percent if app else 0, usage.percent)
        return headers

    def _ok(self, account: AdAccount, kind: str, body: Any) -> Response:
        return json_response(200, body, self._charge(account, kind))

    def _account_answer(
        self, request: Request, params: dict[str, str], account: AdAccount, edge: str | None
    ) -> Response:
        if edge is None:
            fields = _fields(params, ACCOUNT_NODE_FIELDS, "AdAccount")
            return self._ok(
                account,
                "ads_management",
                {k: v for k, v in _account_node(account).items() if k in fields},
            )
        if edge == "campaigns":
            fields = _fields(params, CAMPAIGN_FIELDS, "Campaign")
            wanted = insights._listed(
                params.get("effective_status", '["ACTIVE","PAUSED"]'), "effective_status"
            )
            if not set(wanted) <= {"ACTIVE", "PAUSED", "ARCHIVED", "DELETED"}:
                raise invalid_parameter(
                    "effective_status must be a list of ACTIVE, PAUSED, ARCHIVED, DELETED"
                )
            shown = [
                {k: v for k, v in _campaign(account, c).items() if k in fields}
                for c in account.campaigns()
                if c.status.upper() in wanted
            ]
            return self._ok(account, "ads_management", page(request, params, shown))
        if edge != "insights":
            raise _no_field(edge, "AdAccount")
        query = insights.parse_query(params, account.local_day())
        omni = account.account_id not in self.sandbox.without_omni
        cells = query.cells(len(account.campaigns()))
        if request.method == "POST":
            try:
                job = self.sandbox.jobs.create(
                    account.account_id,
                    query,
                    size=cells,
                    compute=lambda at: insights.rows(account, query, omni=omni, as_of=at),
                )
            except TooManyJobs as exc:
                raise throttled(4, account.account_id) from exc
            return self._ok(account, "ads_insights", {"report_run_id": job.id})
        if cells > self.sandbox.max_sync_cells:
            raise invalid_parameter(
                "Please reduce the amount of data you're asking for, then retry your request",
                1487534,
            )
        return self._ok(
            account, "ads_insights", page(request, params, insights.rows(account, query, omni=omni))
        )


def _no_field(name: str, node_type: str) -> GraphError:
    return invalid_parameter(
        f"Tried accessing nonexisting field ({name}) on node type ({node_type})"
    )


def _fields(params: dict[str, str], known: tuple[str, ...], node_type: str) -> set[str]:
    fields = insights._listed(params.get("fields", "id"), "fields")
    for name in fields:
        if name not in known:
            raise _no_field(name, node_type)
    return {*fields, "id"}


def _meta_time(moment: datetime, account: AdAccount) -> str:
    return moment.astimezone(account.tz).strftime("%Y-%m-%dT%H:%M:%S%z")


def _account_node(account: AdAccount) -> dict[str, Any]:
    offset = account.clock.now().astimezone(account.tz).utcoffset()
    return {
        "id": f"act_{account.account_id}",
        "account_id": account.account_id,
        "name": account.name,
        "currency": account.currency,
        "timezone_name": account.time_zone,
        "timezone_offset_hours_utc": offset.total_seconds() / 3600 if offset else 0.0,
        "account_status": 1,
    }


def _campaign(account: AdAccount, campaign: CampaignState) -> dict[str, Any]:
    start = account.day_bounds(campaign.start)[0]
    shown: dict[str, Any] = {
        "id": campaign.id,
        "account_id": account.account_id,
        "name": campaign.name,
        "status": campaign.status.upper(),
        "effective_status": campaign.status.upper(),
        "created_time": _meta_time(campaign.created_at, account),
        "updated_time": _meta_time(campaign.updated_at, account),
        "start_time": _meta_time(start, account),
        "daily_budget": str(campaign.daily_budget),
    }
    if campaign.end is not None:
        shown["stop_time"] = _meta_time(account.day_bounds(campaign.end)[1], account)
    return shown


def _report_run(job: Job[Any]) -> dict[str, Any]:
    run: dict[str, Any] = {
        "id": job.id,
        "account_id": job.owner,
        "time_ref": int(job.created_at.timestamp()),
        "async_status": ASYNC_STATUS[job.phase],
        "async_percent_completion": job.percent,
        "date_start": job.query.since.isoformat(),
        "date_stop": job.query.until.isoformat(),
    }
    if job.finished_at is not None:
        run["time_completed"] = int(job.finished_at.timestamp())
    if job.phase == "failed":
        run |= {
            "error_code": -2,
            "error_subcode": 2490547,
            "error_message": "Generating the report failed. Try again later.",
            "error_user_title": "Report Failed",
            "error_user_msg": "Generating the report failed. Try again later.",
        }
    return run


def create_meta_app(sandbox: MetaSandbox) -> Starlette:
    """The Starlette app serving `sandbox` (the Graph API host: KPI_META_ADS_BASE_URL)."""
    graph = GraphApp(sandbox)
    serve: Callable[[Request], Awaitable[Response]] = graph.serve
    app = Starlette(
        routes=[
            Route("/{version}/{node}", serve, methods=["GET"]),
            Route("/{version}/{node}/{edge}", serve, methods=["GET", "POST"]),
        ]
    )
    app.state.sandbox = sandbox
    return app
