"""One loopback host for LinkedIn: the token endpoint and the Marketing API under `/rest`.

    sandbox = LinkedInSandbox(seed=7)
    with LoopbackServer(create_linkedin_app(sandbox)) as server:
        token_url = server.url("/oauth/v2/accessToken")    # www.linkedin.com's
        base_url = server.url("/rest")                      # api.linkedin.com/rest

Every API request passes LinkedIn's gateway first, in this order: the scripted faults (the
kit's injector, in LinkedIn's words: errors.py), the `LinkedIn-Version` header (missing:
400 VERSION_MISSING; not active: 426 NONEXISTENT_VERSION), `X-Restli-Protocol-Version:
2.0.0` (without it the Rest.li 2.0 query is not read: 400), the bearer token (401 with the
token's problem, 403 without the scope), then the daily limits (429 naming the limit).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kpi_pipelines.sandbox.kit import json_response
from kpi_pipelines.sandbox.linkedin.analytics import analytics, parse_query
from kpi_pipelines.sandbox.linkedin.entities import account_body, campaigns_page
from kpi_pipelines.sandbox.linkedin.errors import (
    GATEWAY,
    LinkedInErrors,
    TokenEndpointErrors,
    api_error,
    daily_limit,
    param_invalid,
)
from kpi_pipelines.sandbox.linkedin.oauth import authenticate, token_response
from kpi_pipelines.sandbox.linkedin.restli import RestliSyntaxError
from kpi_pipelines.sandbox.linkedin.sandbox import Caller, LinkedInSandbox

Handler = Callable[[Request, Caller, str], Response]
_RESTLI = {"X-RestLi-Protocol-Version": "2.0.0"}


def _gate(
    sandbox: LinkedInSandbox, request: Request, endpoint: str, scope: str
) -> Caller | Response:
    version = request.headers.get("linkedin-version", "").strip()
    if not version:
        return api_error(
            400,
            "A version must be present. Please specify a version by adding the"
            " LinkedIn-Version header.",
            code="VERSION_MISSING",
            headers=GATEWAY,
        )
    if not sandbox.version_active(version):
        shown = version.split(".")[0] + "01" if version[:6].isdigit() else version
        return api_error(
            426,
            f"Requested version {shown} is not active",
            code="NONEXISTENT_VERSION",
            headers=GATEWAY,
        )
    if request.headers.get("x-restli-protocol-version") != "2.0.0":
        return param_invalid(
            "q", "Rest.li 2.0 syntax needs the header X-Restli-Protocol-Version: 2.0.0"
        )
    caller = authenticate(
        sandbox, request.headers.get("authorization"), scope, endpoint, version.split(".")[0]
    )
    if isinstance(caller, Response):
        return caller
    limit = sandbox.charge(caller, endpoint)
    return daily_limit(limit) if limit is not None else caller


def _api(
    sandbox: LinkedInSandbox, endpoint: str, scope: str, handler: Handler
) -> Callable[[Request], Awaitable[Response]]:
    errors = LinkedInErrors()

    async def route(request: Request) -> Response:
        async def handle() -> Response:
            caller = _gate(sandbox, request, endpoint, scope)
            if isinstance(caller, Response):
                return caller
            try:
                return handler(request, caller, request.headers["linkedin-version"])
            except RestliSyntaxError as exc:
                return param_invalid(exc.param, exc.description)

        return await sandbox.faults.serve(endpoint, errors, handle)

    return route


def _account_of(sandbox: LinkedInSandbox, request: Request, caller: Caller, version: str):
    account_id = request.path_params["account_id"]
    account = sandbox.account(account_id) if account_id.isdigit() else None
    if account is None:
        return api_error(404, f"AdAccount {account_id} does not exist", code="NOT_FOUND")
    if not sandbox.can_read(caller.member, account_id):
        return api_error(403, f"Not enough permissions to access: adAccounts.GET.{version}")
    return account


def create_linkedin_app(sandbox: LinkedInSandbox) -> Starlette:
    """The Starlette app serving `sandbox`."""

    def get_account(request: Request, caller: Caller, version: str) -> Response:
        account = _account_of(sandbox, request, caller, version)
        if isinstance(account, Response):
            return account
        return json_response(200, account_body(account), _RESTLI)

    def search_campaigns(request: Request, caller: Caller, version: str) -> Response:
        account = _account_of(sandbox, request, caller, version)
        if isinstance(account, Response):
            return account
        query = request.scope["query_string"].decode("latin-1")
        return json_response(200, campaigns_page(account, query), _RESTLI)

    def ad_analytics(request: Request, caller: Caller, version: str) -> Response:
        query = parse_query(
            request.scope["query_string"].decode("latin-1"),
            sandbox.clock.now().date(),
            sandbox.max_metrics,
        )
        return json_response(200, analytics(sandbox, caller, query), _RESTLI)

    token_errors = TokenEndpointErrors()

    async def token(request: Request) -> Response:
        return await sandbox.faults.serve(
            "oauth", token_errors, lambda: token_response(sandbox, request)
        )

    app = Starlette(
        routes=[
            Route("/oauth/v2/accessToken", token, methods=["POST"]),
            Route(
                "/rest/adAccounts/{account_id}",
                _api(sandbox, "adAccounts", "r_ads", get_account),
            ),
            Route(
                "/rest/adAccounts/{account_id}/adCampaigns",
                _api(sandbox, "adCampaigns", "r_ads", search_campaigns),
            ),
            Route(
                "/rest/adAnalytics", _api(sandbox, "adAnalytics", "r_ads_reporting", ad_analytics)
            ),
        ]
    )
    app.state.sandbox = sandbox
    return app
