"""Google's consent page and authorization-code grant, over HTTP: the redirect back with the
code and the state, the error pages, the code exchange with its documented refusals, and
refresh tokens rotated when a test asks for it."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from kpi_pipelines.sandbox.google import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, GoogleSandbox
from kpi_pipelines.sandbox.google.oauth import ANALYTICS_READONLY
from kpi_pipelines.sandbox.kit.server import LoopbackServer

VERIFIER = "Verifier-0123456789-0123456789-0123456789-0123456789"
REDIRECT = "http://127.0.0.1:47011/callback"


def _consent(server: LoopbackServer, **query: str) -> httpx.Response:
    params = {
        "client_id": DEMO_CLIENT_ID,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": ANALYTICS_READONLY,
        "state": "state-1",
        "code_challenge": create_s256_code_challenge(VERIFIER),
        "code_challenge_method": "S256",
        "access_type": "offline",
        "prompt": "consent",
        **query,
    }
    return httpx.get(server.url("/o/oauth2/v2/auth") + "?" + urlencode(params))


def _back(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    target = urlsplit(response.headers["location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == REDIRECT
    return {k: v[0] for k, v in parse_qs(target.query, keep_blank_values=True).items()}


def _exchange(server: LoopbackServer, code: str, **fields: str) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": DEMO_CLIENT_ID,
        "client_secret": DEMO_CLIENT_SECRET,
        "redirect_uri": REDIRECT,
        "code_verifier": VERIFIER,
        **fields,
    }
    return httpx.post(server.url("/token"), data={k: v for k, v in form.items() if v})


def test_consent_redirects_back_with_a_code_the_token_endpoint_exchanges_once(
    server: LoopbackServer, sandbox: GoogleSandbox
) -> None:
    back = _back(_consent(server))
    assert back["state"] == "state-1" and back["code"].startswith("4/0A")
    assert back["scope"] == ANALYTICS_READONLY
    exchanged = _exchange(server, back["code"])
    assert exchanged.status_code == 200, exchanged.text
    body = exchanged.json()
    assert set(body) == {"access_token", "expires_in", "refresh_token", "scope", "token_type"}
    assert body["scope"] == ANALYTICS_READONLY and body["refresh_token"].startswith("1//")
    [issued] = sandbox.oauth.consent.codes
    assert issued.verified and issued.code_challenge_method == "S256"
    assert issued.grant == body["refresh_token"]
    # the grant works: its refresh token refreshes, its access token opens GA4
    refreshed = httpx.post(
        server.url("/token"),
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": DEMO_CLIENT_ID,
            "client_secret": DEMO_CLIENT_SECRET,
        },
    )
    assert refreshed.status_code == 200 and "refresh_token" not in refreshed.json()
    assert sandbox.oauth.validate_bearer(f"Bearer {body['access_token']}")
    # the code is spent
    again = _exchange(server, back["code"])
    assert again.status_code == 400
    assert again.json() == {"error": "invalid_grant", "error_description": "Bad Request"}


def test_without_offline_access_there_is_no_refresh_token(server: LoopbackServer) -> None:
    back = _back(_consent(server, access_type="online"))
    body = _exchange(server, back["code"]).json()
    assert "refresh_token" not in body and body["access_token"].startswith("ya29.")


@pytest.mark.parametrize(
    ("change", "error", "description"),
    [
        ({"code_verifier": ""}, "invalid_grant", "Missing code verifier."),
        ({"code_verifier": "W" * 50}, "invalid_grant", "Invalid code verifier."),
        (
            {"redirect_uri": "http://127.0.0.1:47012/callback"},
            "redirect_uri_mismatch",
            "Bad Request",
        ),
        ({"code": "4/0Anever-issued"}, "invalid_grant", "Malformed auth code."),
        ({"code": ""}, "invalid_request", "Missing required parameter: code"),
    ],
)
def test_the_token_endpoint_refuses_a_code_as_google_does(
    server: LoopbackServer, change: dict[str, str], error: str, description: str
) -> None:
    back = _back(_consent(server))
    refused = _exchange(server, **{"code": back["code"], **change})
    assert refused.status_code == 400
    assert refused.json() == {"error": error, "error_description": description}


def test_an_expired_code_is_refused(server: LoopbackServer, sandbox: GoogleSandbox) -> None:
    back = _back(_consent(server))
    sandbox.advance(minutes=11)
    assert _exchange(server, back["code"]).json()["error"] == "invalid_grant"


def test_a_refused_consent_redirects_with_access_denied_and_the_state(
    server: LoopbackServer, sandbox: GoogleSandbox
) -> None:
    sandbox.oauth.consent.answer = "deny"
    assert _back(_consent(server)) == {"error": "access_denied", "state": "state-1"}
    assert sandbox.oauth.consent.codes == []


@pytest.mark.parametrize(
    ("change", "status", "shown"),
    [
        ({"client_id": "unknown.apps.googleusercontent.com"}, 401, "Error 401: invalid_client"),
        ({"redirect_uri": "https://evil.example/callback"}, 400, "redirect_uri_mismatch"),
        ({"redirect_uri": "http://localhost:47011/callback"}, 400, "redirect_uri_mismatch"),
        ({"response_type": "token"}, 400, "Error 400: invalid_request"),
        ({"code_challenge_method": "S512"}, 400, "Error 400: invalid_request"),
        ({"scope": ""}, 400, "Missing required parameter: scope"),
        ({"scope": "https://www.googleapis.com/auth/gmail"}, 400, "Error 400: invalid_scope"),
    ],
)
def test_what_the_consent_page_shows_instead_of_redirecting(
    server: LoopbackServer, change: dict[str, str], status: int, shown: str
) -> None:
    page = _consent(server, **change)
    assert page.status_code == status and "location" not in page.headers
    assert shown in page.text


def test_rotated_refresh_tokens_are_refused_once_replaced(
    server: LoopbackServer, sandbox: GoogleSandbox
) -> None:
    sandbox.oauth.rotate_refresh_tokens = True
    first = _exchange(server, _back(_consent(server))["code"]).json()["refresh_token"]

    def refresh(token: str) -> httpx.Response:
        return httpx.post(
            server.url("/token"),
            data={
                "grant_type": "refresh_token",
                "refresh_token": token,
                "client_id": DEMO_CLIENT_ID,
                "client_secret": DEMO_CLIENT_SECRET,
            },
        )

    rotated = refresh(first).json()
    second = rotated["refresh_token"]
    assert second != first and sandbox.oauth.validate_bearer(f"Bearer {rotated['access_token']}")
    assert refresh(first).json()["error"] == "invalid_grant"
    assert refresh(second).status_code == 200
