"""Notion's public OAuth flow in the sandbox, driven by the kit's client side (the code
exchange and refresh `kpi-pipelines connect` and the adapters use): consent with PKCE and
state, Basic client authentication and JSON bodies, an access token that opens the API to
what was shared, refresh tokens rotated (the used one refused), codes used once."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from kpi_pipelines.integrations.shared.errors import ProviderAuthError
from kpi_pipelines.integrations.shared.oauth import OAuth2Credentials, exchange_code
from kpi_pipelines.integrations.shared.oauth_flow import OAuthFlow
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.sandbox.notion import V2025, NotionSandbox, ObjectivesBoard, create_notion_app

CLIENT_ID, CLIENT_SECRET = "notion-client-1", "secret_notion_client_sandbox"
REDIRECT = "http://127.0.0.1:8765/callback"
FLOW = OAuthFlow(
    authorize_url="https://api.notion.com/v1/oauth/authorize",
    token_url="https://api.notion.com/v1/oauth/token",
    client_variables={
        "client_id": "KPI_NOTION_CLIENT_ID",
        "client_secret": "KPI_NOTION_CLIENT_SECRET",
    },
    client_auth="client_secret_basic",
    token_body="json",
    rotates_refresh_tokens=True,
    authorize_params={"owner": "user"},
)


class Served:
    def __init__(self, sandbox: NotionSandbox, board: ObjectivesBoard, url: str) -> None:
        self.sandbox, self.board, self.url = sandbox, board, url
        self.credentials = OAuth2Credentials(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            refresh_token=None,
            token_url=f"{url}/v1/oauth/token",
        )

    def consent(self, verifier: str, state: str = "s-1") -> dict[str, list[str]]:
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        query = {
            "client_id": CLIENT_ID,
            "redirect_uri": REDIRECT,
            "response_type": "code",
            "owner": "user",
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        answer = httpx.get(f"{self.url}/v1/oauth/authorize?{urlencode(query)}")
        assert answer.status_code == 302, answer.text
        location = answer.headers["location"]
        assert location.startswith(REDIRECT)
        return parse_qs(urlsplit(location).query)

    def refresh(self, refresh_token: str) -> httpx.Response:
        return httpx.post(
            self.credentials.token_url,
            auth=(CLIENT_ID, CLIENT_SECRET),
            json={"grant_type": "refresh_token", "refresh_token": refresh_token},
        )

    def api(self, token: str, path: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}", "Notion-Version": V2025}
        return httpx.get(self.url + path, headers=headers)


@pytest.fixture
def served() -> Iterator[Served]:
    sandbox = NotionSandbox(seed=5, rate_limit=None)
    notion = sandbox.add_workspace("Acme")
    board = ObjectivesBoard.create(notion, seed=5, objectives=3, notes_per_objective=0)
    sandbox.oauth.register_client(CLIENT_ID, CLIENT_SECRET)
    with LoopbackServer(create_notion_app(sandbox), dated_by=sandbox.clock) as server:
        yield Served(sandbox, board, server.base_url)


def test_a_consented_code_becomes_a_grant_that_reads_what_was_shared(served: Served) -> None:
    verifier = secrets.token_urlsafe(48)
    answer = served.consent(verifier, state="state-42")
    assert answer["state"] == ["state-42"]
    [code] = answer["code"]
    token = exchange_code(
        "notion",
        FLOW,
        served.credentials,
        code=code,
        redirect_uri=REDIRECT,
        code_verifier=verifier,
    )
    assert token.refresh_token and token.expires_in == 3600
    assert served.sandbox.oauth.consent.codes[0].verified  # PKCE checked
    database = served.board.objectives_db.id
    assert served.api(token.access_token, f"/v1/databases/{database}").status_code == 200
    # the code is spent
    with pytest.raises(ProviderAuthError, match="invalid_grant"):
        exchange_code(
            "notion",
            FLOW,
            served.credentials,
            code=code,
            redirect_uri=REDIRECT,
            code_verifier=verifier,
            max_attempts=1,
        )


def test_a_wrong_verifier_or_redirect_is_refused(served: Served) -> None:
    verifier = secrets.token_urlsafe(48)
    for wrong in ({"code_verifier": secrets.token_urlsafe(48)}, {"redirect_uri": REDIRECT + "x"}):
        [code] = served.consent(verifier)["code"]
        options = {"code_verifier": verifier, "redirect_uri": REDIRECT, **wrong}
        with pytest.raises(ProviderAuthError, match="invalid_grant"):
            exchange_code("notion", FLOW, served.credentials, code=code, max_attempts=1, **options)


def test_each_refresh_rotates_the_refresh_token_and_refuses_the_used_one(served: Served) -> None:
    verifier = secrets.token_urlsafe(48)
    [code] = served.consent(verifier)["code"]
    first = exchange_code(
        "notion",
        FLOW,
        served.credentials,
        code=code,
        redirect_uri=REDIRECT,
        code_verifier=verifier,
    )
    refreshed = served.refresh(first.refresh_token or "")
    assert refreshed.status_code == 200, refreshed.text
    second = refreshed.json()
    assert second["refresh_token"] != first.refresh_token
    again = served.refresh(first.refresh_token or "")
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert served.api(second["access_token"], "/v1/users/me").status_code == 200
    assert served.refresh(second["refresh_token"]).status_code == 200


def test_the_token_endpoint_wants_the_clients_basic_authentication(served: Served) -> None:
    answer = httpx.post(
        served.credentials.token_url,
        auth=(CLIENT_ID, "wrong"),
        json={"grant_type": "refresh_token", "refresh_token": "x"},
    )
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"
