"""LinkedIn's OAuth 2.0 token endpoint (`POST /oauth/v2/accessToken`, the refresh-token
grant a server-side connector uses) and the API's bearer check.

`grant_type=refresh_token&refresh_token=..&client_id=..&client_secret=..` (form body) ->
`{"access_token": "AQV...", "expires_in": 5184000, "refresh_token": <the same one>,
"refresh_token_expires_in": <seconds left>, "scope": "r_ads,r_ads_reporting"}`: the refresh
token keeps the lifetime it was issued with (365 days, not sliding) and an access token never
outlives it. Failures, as LinkedIn sends them: a refresh token that is invalid, expired or
revoked (or another client's) -> 400 `invalid_request` "The provided authorization grant or
refresh token is invalid, expired or revoked"; a missing parameter -> 400 `invalid_request`;
a wrong client id or secret -> 401 `invalid_client`; another grant -> 400
`unsupported_grant_type`.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from kpi_pipelines.sandbox.kit import Token, json_response
from kpi_pipelines.sandbox.linkedin.errors import api_error, token_problem
from kpi_pipelines.sandbox.linkedin.sandbox import ACCESS_LIFETIME, Caller, LinkedInSandbox

GRANT_GONE = "The provided authorization grant or refresh token is invalid, expired or revoked"
_NO_STORE = {"Cache-Control": "no-cache, no-store", "Pragma": "no-cache"}


def _oauth_error(status: int, error: str, description: str) -> Response:
    return json_response(status, {"error": error, "error_description": description}, _NO_STORE)


async def token_response(sandbox: LinkedInSandbox, request: Request) -> Response:
    body = (await request.body()).decode("utf-8", errors="replace")
    form = dict(parse_qsl(body, keep_blank_values=True))
    grant_type = form.get("grant_type", "")
    if grant_type != "refresh_token":
        return _oauth_error(400, "unsupported_grant_type", f"Unsupported grant_type {grant_type}")
    for name in ("client_id", "client_secret", "refresh_token"):
        if not form.get(name):
            return _oauth_error(400, "invalid_request", f'A required parameter "{name}" is missing')
    client_id = form["client_id"]
    known = sandbox.clients.get(client_id)
    if known is None or not secrets.compare_digest(known, form["client_secret"]):
        return _oauth_error(401, "invalid_client", "Client authentication failed")
    refresh_token = form["refresh_token"]
    grant = sandbox.tokens.check(refresh_token, kind="refresh")
    if not isinstance(grant, Token) or sandbox.client_of(refresh_token) != client_id:
        return _oauth_error(400, "invalid_request", GRANT_GONE)
    assert grant.expires_at is not None
    left = grant.expires_at - sandbox.clock.now()
    access = sandbox.tokens.issue(
        grant.subject, lifetime=min(ACCESS_LIFETIME, left), scopes=grant.scopes
    )
    sandbox.bind(access.value, client_id)
    return json_response(
        200,
        {
            "access_token": access.value,
            "expires_in": int(min(ACCESS_LIFETIME, left) / timedelta(seconds=1)),
            "refresh_token": refresh_token,
            "refresh_token_expires_in": int(left / timedelta(seconds=1)),
            "scope": ",".join(sorted(grant.scopes)),
        },
        _NO_STORE,
    )


def authenticate(
    sandbox: LinkedInSandbox, authorization: str | None, scope: str, resource: str, version: str
) -> Caller | Response:
    """The caller of a request, or LinkedIn's 401 (the token's problem) or 403 (its scope)."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return token_problem("missing")
    checked = sandbox.tokens.check(value.strip())
    if not isinstance(checked, Token):
        return token_problem(checked)
    if scope not in checked.scopes:
        return api_error(403, f"Not enough permissions to access: {resource}.GET.{version}")
    client_id = sandbox.client_of(checked.value) or ""
    return Caller(member=checked.subject, client_id=client_id, scopes=checked.scopes)
