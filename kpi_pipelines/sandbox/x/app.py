"""X Ads API v12 on loopback: the routes, each behind OAuth 1.0a, its rate limit and the
kit's fault script (APIs "accounts", "campaigns", "stats", "jobs", "files").

- `GET /12/accounts/:account_id`: the account (its time zone; X's account has no currency:
  money is in its campaigns' currency);
- `GET /12/accounts/:account_id/campaigns`: `count` (default 200, at most 1000), `cursor`
  (`next_cursor`), `with_deleted` (deleted campaigns are hidden unless true),
  `campaign_ids`, `with_total_count`;
- `GET /12/stats/accounts/:account_id`: synchronous stats (stats.py), 250 per user per 15
  minutes;
- `POST /12/stats/jobs/accounts/:account_id`: an async job (the same query, up to 90 days);
  `GET` the same path with `job_ids` polls them (QUEUED, PROCESSING, SUCCESS with a `url`,
  FAILED), with `x-concurrent-job-limit` headers; the `url` is a gzip file of the stats
  body, fetched without credentials (`/advertiser-api-async-analytics/<name>.json.gz`).
An account the user may not use is X's 403 ACCOUNT_NOT_FOUND.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kpi_pipelines.sandbox.kit import CallBudget, TooManyJobs
from kpi_pipelines.sandbox.kit.ads import AdAccount
from kpi_pipelines.sandbox.x.auth import account_access
from kpi_pipelines.sandbox.x.errors import XApiError, rate_headers
from kpi_pipelines.sandbox.x.sandbox import FILES_PATH, MAX_ACTIVE_JOBS, XSandbox
from kpi_pipelines.sandbox.x.stats import JOB_DAYS, SYNC_DAYS, parse_query, stats_body

Answer = tuple[Any, Mapping[str, str]]  # a 200's body and its extra headers
Handler = Callable[[Request, AdAccount, Mapping[str, str]], Answer]


def _flag(params: Mapping[str, str], name: str) -> bool:
    value = params.get(name, "false").lower()
    if value not in ("true", "false"):
        raise XApiError(400, f"Expected boolean, got {value!r} for {name}", parameter=name)
    return value == "true"


def _count(params: Mapping[str, str]) -> int:
    text = params.get("count", "200")
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise XApiError(
            400, f"Expected an integer 1..1000, got {text!r} for count", parameter="count"
        )
    return int(text)


def create_x_app(sandbox: XSandbox) -> Starlette:
    """The Starlette app serving `sandbox`."""

    def endpoint(
        api: str, budget: CallBudget, handle: Handler
    ) -> Callable[[Request], Awaitable[Response]]:
        async def serve(request: Request) -> Response:
            params = dict(request.query_params)

            async def answer() -> Response:
                headers: dict[str, str] = {}
                try:
                    grant = await sandbox.auth.verify(request)
                    usage = budget.charge((grant.token, api, request.method))
                    headers = rate_headers(usage)
                    if not usage.allowed:
                        raise XApiError(429, "Rate limit exceeded")
                    account_id = request.path_params["account_id"]
                    account_access(grant, account_id)
                    account = sandbox.account(account_id)
                    if account is None:
                        account_access(grant, "")  # X cannot tell them apart either
                    assert account is not None
                    body, extra = handle(request, account, params)
                    return sandbox.errors.respond(200, body, {**headers, **extra})
                except XApiError as error:
                    return sandbox.errors.error_response(error, params, headers)

            return await sandbox.faults.serve(api, sandbox.errors, answer)

        return serve

    def account(request: Request, account: AdAccount, params: Mapping[str, str]) -> Answer:
        body = {
            "data_type": "account",
            "data": sandbox.account_object(account),
            "request": {"params": {"account_id": account.account_id}},
        }
        return body, {}

    def campaigns(request: Request, account: AdAccount, params: Mapping[str, str]) -> Answer:
        count, with_deleted = _count(params), _flag(params, "with_deleted")
        with_total = _flag(params, "with_total_count")
        cursor = params.get("cursor")
        if cursor and with_total:
            raise XApiError(
                400, "cursor and with_total_count are exclusive", code="EXCLUSIVE_PARAMETERS"
            )
        offset = 0 if not cursor else sandbox.offset(cursor)
        if offset is None:
            raise XApiError(400, f"Invalid cursor {cursor!r}", parameter="cursor")
        wanted = {i for i in params.get("campaign_ids", "").split(",") if i}
        states = [
            s
            for s in account.campaigns()
            if (with_deleted or s.status != "archived") and (not wanted or s.id in wanted)
        ]
        page = states[offset : offset + count]
        more = offset + count < len(states)
        body: dict[str, Any] = {
            "request": {"params": {"account_id": account.account_id, **params}},
            "data": [sandbox.campaign_object(account, s) for s in page],
            "data_type": "campaign",
            "next_cursor": sandbox.cursor(offset + count) if more else None,
        }
        if with_total:
            body["total_count"] = len(states)
        return body, {}

    def known(account: AdAccount) -> Callable[[], set[str]]:
        return lambda: {s.id for s in account.campaigns()}

    def stats(request: Request, account: AdAccount, params: Mapping[str, str]) -> Answer:
        query = parse_query(params, account, known(account), SYNC_DAYS)
        return stats_body(account, query, as_of=sandbox.clock.now()), {}

    def jobs(request: Request, account: AdAccount, params: Mapping[str, str]) -> Answer:
        owner = account.account_id
        if request.method == "POST":
            query = parse_query(params, account, known(account), JOB_DAYS)
            try:
                job = sandbox.create_job(account, query, str(request.base_url))
            except TooManyJobs as exc:
                raise XApiError(429, str(exc)) from None
            body = {"request": {"params": query.echo()}, "data": sandbox.job_object(job)}
        else:
            ids = [i for i in params.get("job_ids", "").split(",") if i]
            found = []
            for job_id in ids or [j.id for j in sandbox.jobs.jobs(owner)]:
                try:
                    found.append(sandbox.jobs.poll(job_id, owner=owner))
                except KeyError:
                    continue
            body = {
                "request": {"params": {"job_ids": ids}},
                "next_cursor": None,
                "data": [sandbox.job_object(job) for job in found],
            }
        remaining = MAX_ACTIVE_JOBS - sandbox.jobs.active(owner)
        return body, {
            "x-concurrent-job-limit": str(MAX_ACTIVE_JOBS),
            "x-concurrent-job-limit-remaining": str(max(0, remaining)),
        }

    async def job_file(request: Request) -> Response:
        async def answer() -> Response:
            name = request.path_params["name"].removesuffix(".json.gz")
            data = sandbox.job_file(name)
            if data is None:
                return Response(b"", status_code=404)
            return Response(data, media_type="application/gzip")

        return await sandbox.faults.serve("files", sandbox.errors, answer)

    api, stats_budget = sandbox.api_budget, sandbox.stats_budget
    app = Starlette(
        routes=[
            Route("/12/accounts/{account_id}", endpoint("accounts", api, account)),
            Route("/12/accounts/{account_id}/campaigns", endpoint("campaigns", api, campaigns)),
            Route("/12/stats/accounts/{account_id}", endpoint("stats", stats_budget, stats)),
            Route(
                "/12/stats/jobs/accounts/{account_id}",
                endpoint("jobs", api, jobs),
                methods=["GET", "POST"],
            ),
            Route(FILES_PATH + "/{name}", job_file),
        ]
    )
    app.state.sandbox = sandbox
    return app
