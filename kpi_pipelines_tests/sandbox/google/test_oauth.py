"""The token endpoint and bearer checks: refresh, expiry, revocation, client errors."""

from __future__ import annotations

import time

import httpx
import pytest
from google.auth.exceptions import RefreshError
from googleapiclient.errors import HttpError

from kpi_pipelines.sandbox.google import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_PROPERTY_ID,
    DEMO_REFRESH_TOKEN,
    GoogleSandbox,
)
from kpi_pipelines.sandbox.google.oauth import ANALYTICS_READONLY, SPREADSHEETS_READONLY
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines_tests.sandbox.google.conftest import credentials, ga4_client, serve, small_demo

REPORT = {
    "dateRanges": [{"startDate": "yesterday", "endDate": "yesterday"}],
    "metrics": [{"name": "sessions"}],
}


def _refresh(server: LoopbackServer, **fields: str) -> httpx.Response:
    form = {
        "grant_type": "refresh_token",
        "client_id": DEMO_CLIENT_ID,
        "client_secret": DEMO_CLIENT_SECRET,
        "refresh_token": DEMO_REFRESH_TOKEN,
        **fields,
    }
    return httpx.post(server.url("/token"), data=form)


def _run_report(server: LoopbackServer, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(
        server.url(f"/v1beta/properties/{DEMO_PROPERTY_ID}:runReport"), json=REPORT, headers=headers
    )


def test_refresh_grant_returns_a_bearer_token(
    server: LoopbackServer, sandbox: GoogleSandbox
) -> None:
    response = _refresh(server)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "expires_in", "scope", "token_type"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3599
    assert body["access_token"].startswith("ya29.")
    assert set(body["scope"].split()) == {ANALYTICS_READONLY, SPREADSHEETS_READONLY}
    assert response.headers["cache-control"].startswith("no-cache")
    assert sandbox.oauth.validate_bearer(f"Bearer {body['access_token']}")
    assert not sandbox.oauth.validate_bearer("Bearer ya29.unknown")
    assert not sandbox.oauth.validate_bearer(None)
    assert sandbox.oauth.issued_count() == 1
    assert sandbox.oauth.issued_count(DEMO_REFRESH_TOKEN) == 1
    # HTTP Basic client authentication works too.
    basic = httpx.post(
        server.url("/token"),
        data={"grant_type": "refresh_token", "refresh_token": DEMO_REFRESH_TOKEN},
        auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET),
    )
    assert basic.status_code == 200
    assert sandbox.oauth.issued_count() == 2


@pytest.mark.parametrize(
    ("fields", "status", "body"),
    [
        (
            {"client_id": "nobody.apps.googleusercontent.com"},
            401,
            {"error": "invalid_client", "error_description": "The OAuth client was not found."},
        ),
        (
            {"client_secret": "wrong"},
            401,
            {"error": "invalid_client", "error_description": "Unauthorized"},
        ),
        (
            {"refresh_token": "1//not-issued"},
            400,
            {"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
        ),
        (
            {"refresh_token": ""},
            400,
            {
                "error": "invalid_request",
                "error_description": "Missing required parameter: refresh_token",
            },
        ),
        (
            {"grant_type": "password"},
            400,
            {
                "error": "unsupported_grant_type",
                "error_description": "Invalid grant_type: password",
            },
        ),
    ],
)
def test_token_endpoint_errors(
    server: LoopbackServer, sandbox: GoogleSandbox, fields: dict, status: int, body: dict
) -> None:
    response = _refresh(server, **fields)
    assert response.status_code == status
    assert response.json() == body
    assert sandbox.oauth.issued_count() == 0
    assert sandbox.oauth.requests[-1].status == status


def test_missing_and_invalid_bearer_get_googles_401(server: LoopbackServer) -> None:
    missing = _run_report(server, None)
    assert missing.status_code == 401
    assert missing.json()["error"]["status"] == "UNAUTHENTICATED"
    assert missing.json()["error"]["message"].startswith(
        "Request is missing required authentication credential."
    )
    unknown = _run_report(server, "ya29.forged")
    assert unknown.status_code == 401
    error = unknown.json()["error"]
    assert error["code"] == 401
    assert error["status"] == "UNAUTHENTICATED"
    assert error["message"].startswith("Request had invalid authentication credentials.")
    assert unknown.headers["www-authenticate"].startswith("Bearer ")


def test_access_token_expires_on_the_sandbox_clock() -> None:
    sandbox = small_demo(token_lifetime=1)
    prop = sandbox.ga4.property(DEMO_PROPERTY_ID)
    prop.sessions(prop.start_date, prop.today())  # simulate now, not within the token's second
    with serve(sandbox) as server:
        token = _refresh(server).json()["access_token"]
        assert _run_report(server, token).status_code == 200
        time.sleep(1.05)  # expires by waiting...
        expired = _run_report(server, token)
        assert expired.status_code == 401
        assert expired.json()["error"]["message"].startswith(
            "Request had invalid authentication credentials."
        )
    sandbox = small_demo()
    with serve(sandbox) as server:
        token = _refresh(server).json()["access_token"]
        assert _run_report(server, token).status_code == 200
        sandbox.advance(minutes=59)
        assert _run_report(server, token).status_code == 200
        sandbox.advance(minutes=1)  # ...or by advancing the clock past 3599 s
        assert _run_report(server, token).status_code == 401


def test_official_client_refreshes_through_the_sandbox(
    server: LoopbackServer, sandbox: GoogleSandbox
) -> None:
    creds = credentials(server)
    client = ga4_client(server, creds)
    properties = client.properties()
    properties.runReport(property=f"properties/{DEMO_PROPERTY_ID}", body=REPORT).execute()
    assert sandbox.oauth.issued_count() == 1
    assert creds.token is not None and sandbox.oauth.validate_bearer(f"Bearer {creds.token}")
    first = creds.token
    properties.runReport(property=f"properties/{DEMO_PROPERTY_ID}", body=REPORT).execute()
    assert sandbox.oauth.issued_count() == 1  # still valid: no refresh
    # The token dies server-side (a long sync outlives it): the 401 makes the client refresh
    # once and replay the request.
    assert sandbox.expire_access_tokens() == 1
    properties.runReport(property=f"properties/{DEMO_PROPERTY_ID}", body=REPORT).execute()
    assert sandbox.oauth.issued_count() == 2
    assert creds.token != first


def test_short_lived_tokens_are_refreshed_before_use() -> None:
    # google-auth refreshes tokens that expire within 3 min 45 s before each request.
    sandbox = small_demo(token_lifetime=5)
    with serve(sandbox) as server:
        properties = ga4_client(server).properties()
        for _ in range(3):
            properties.runReport(property=f"properties/{DEMO_PROPERTY_ID}", body=REPORT).execute()
        assert sandbox.oauth.issued_count() == 3


def test_revoked_refresh_token(server: LoopbackServer, sandbox: GoogleSandbox) -> None:
    creds = credentials(server)
    properties = ga4_client(server, creds).properties()
    properties.runReport(property=f"properties/{DEMO_PROPERTY_ID}", body=REPORT).execute()
    live = creds.token
    sandbox.revoke(DEMO_REFRESH_TOKEN)
    # Access tokens issued from it die with it...
    assert _run_report(server, live).status_code == 401
    # ...and the refresh grant fails with invalid_grant, which the client surfaces.
    response = _refresh(server)
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_grant",
        "error_description": "Token has been expired or revoked.",
    }
    with pytest.raises(RefreshError, match="invalid_grant"):
        properties.runReport(property=f"properties/{DEMO_PROPERTY_ID}", body=REPORT).execute()


def test_insufficient_scope_is_403(server: LoopbackServer, sandbox: GoogleSandbox) -> None:
    sandbox.add_refresh_token("1//sheets-only", DEMO_CLIENT_ID, scopes=(SPREADSHEETS_READONLY,))
    properties = ga4_client(server, credentials(server, "1//sheets-only")).properties()
    with pytest.raises(HttpError) as caught:
        properties.runReport(property=f"properties/{DEMO_PROPERTY_ID}", body=REPORT).execute()
    assert caught.value.resp.status == 403
    assert "insufficient authentication scopes" in caught.value.reason


def test_revoke_endpoint(server: LoopbackServer, sandbox: GoogleSandbox) -> None:
    token = _refresh(server).json()["access_token"]
    assert httpx.post(server.url("/revoke"), params={"token": token}).status_code == 200
    assert not sandbox.oauth.validate_bearer(f"Bearer {token}")
    again = httpx.post(server.url("/revoke"), data={"token": token})
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_token"
