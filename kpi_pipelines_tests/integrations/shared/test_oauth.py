"""OAuth 2.0 refresh against the Google sandbox's token endpoint, over loopback HTTP."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from kpi_pipelines.integrations.shared.errors import (
    ProviderAuthError,
    ProviderRequestError,
    ProviderUnavailable,
)
from kpi_pipelines.integrations.shared.http import ProviderHttpClient
from kpi_pipelines.integrations.shared.oauth import (
    DEFAULT_GOOGLE_TOKEN_URL,
    GOOGLE_CLIENT_VARIABLES,
    OAuth2Credentials,
    OAuth2Session,
    google_token_url,
)
from kpi_pipelines.sandbox.google import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_PROPERTY_ID,
    Fault,
    GoogleSandbox,
    create_google_app,
)
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.sandbox.linkedin import LinkedInSandbox, create_linkedin_app
from kpi_pipelines.settings import provider_base_url
from kpi_pipelines.warehouse.control import Connection

REPORT = f"/v1beta/properties/{DEMO_PROPERTY_ID}:runReport"
BODY = {
    "dateRanges": [{"startDate": "today", "endDate": "today"}],
    "metrics": [{"name": "sessions"}],
}


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[GoogleSandbox, LoopbackServer]]:
    sandbox = GoogleSandbox.demo(property_options={"history_days": 2, "daily_sessions": 20})
    with LoopbackServer(create_google_app(sandbox)) as server:
        yield sandbox, server


@pytest.fixture
def sandbox(served) -> Iterator[GoogleSandbox]:
    sandbox, _ = served
    # Each test gets its own refresh token, so revoking one does not affect the others.
    token = f"1//test-{threading.get_ident()}-{len(sandbox.oauth.refresh_tokens)}-refresh"
    sandbox.add_refresh_token(token, DEMO_CLIENT_ID)
    sandbox.test_refresh_token = token  # type: ignore[attr-defined]
    yield sandbox
    sandbox.faults.clear()


@pytest.fixture
def server(served) -> LoopbackServer:
    return served[1]


def session_for(
    sandbox: GoogleSandbox, server: LoopbackServer, *, secret: str = DEMO_CLIENT_SECRET, **kw
) -> OAuth2Session:
    credentials = OAuth2Credentials(
        client_id=DEMO_CLIENT_ID,
        client_secret=secret,
        refresh_token=sandbox.test_refresh_token,  # type: ignore[attr-defined]
        token_url=server.url("/token"),
    )
    kw.setdefault("clock", sandbox.clock.monotonic)  # the sandbox's clock decides expiry
    kw.setdefault("sleep", lambda seconds: None)
    return OAuth2Session("google_analytics", credentials, **kw)


class Recorder:
    """Statuses of every response an httpx client received (auth retries included)."""

    def __init__(self) -> None:
        self.statuses: list[int] = []

    def __call__(self, response: httpx.Response) -> None:
        self.statuses.append(response.status_code)


def api_client(server: LoopbackServer, session: OAuth2Session, recorder: Recorder) -> httpx.Client:
    return httpx.Client(
        base_url=server.base_url, auth=session.auth(), event_hooks={"response": [recorder]}
    )


def issued(sandbox: GoogleSandbox) -> int:
    return sandbox.oauth.issued_count(sandbox.test_refresh_token)  # type: ignore[attr-defined]


def test_token_is_refreshed_ahead_of_expiry_without_a_rejected_request(sandbox, server) -> None:
    recorder = Recorder()
    with (
        session_for(sandbox, server, leeway=60) as session,
        api_client(server, session, recorder) as client,
    ):
        assert client.post(REPORT, json=BODY).status_code == 200
        first = session.access_token()
        sandbox.advance(seconds=3599 - 30)  # 30 s left: inside the 60 s leeway
        assert client.post(REPORT, json=BODY).status_code == 200
        assert session.access_token() != first
    assert issued(sandbox) == 2
    assert recorder.statuses == [200, 200]  # the old token was replaced before it was refused


def test_a_token_shorter_lived_than_the_leeway_is_not_refreshed_on_every_call(
    sandbox, server
) -> None:
    sandbox.oauth.token_lifetime = 40
    try:
        with session_for(sandbox, server, leeway=60) as session:
            first = session.access_token()
            assert session.access_token() == first  # renewed at half its life, not at once
            sandbox.advance(seconds=21)
            assert session.access_token() != first
            assert session.refreshes == 2
    finally:
        sandbox.oauth.token_lifetime = 3599


def test_a_401_refreshes_once_and_resends(sandbox, server) -> None:
    recorder = Recorder()
    with session_for(sandbox, server) as session, api_client(server, session, recorder) as client:
        assert client.post(REPORT, json=BODY).status_code == 200
        sandbox.expire_access_tokens()  # the session still thinks its token is good
        assert client.post(REPORT, json=BODY).status_code == 200
    assert recorder.statuses == [200, 401, 200]
    assert issued(sandbox) == 2


def test_the_auth_plugs_into_the_provider_http_client(sandbox, server) -> None:
    with (
        session_for(sandbox, server) as session,
        ProviderHttpClient(
            "google_analytics", server.base_url, auth=session.auth(), sleep=lambda s: None
        ) as client,
    ):
        assert "rows" in client.post_json(REPORT, json=BODY)
        sandbox.expire_access_tokens()
        assert "rows" in client.post_json(REPORT, json=BODY)
        assert client.stats.requests_sent == 2  # the 401 retry happened inside the auth flow
    assert issued(sandbox) == 2


def test_revoked_refresh_token_says_reconnect(sandbox, server) -> None:
    with (
        session_for(sandbox, server) as session,
        ProviderHttpClient(
            "google_analytics", server.base_url, auth=session.auth(), sleep=lambda s: None
        ) as client,
    ):
        client.post_json(REPORT, json=BODY)
        sandbox.revoke(sandbox.test_refresh_token)  # also revokes its access tokens
        with pytest.raises(ProviderAuthError) as raised:
            client.post_json(REPORT, json=BODY)
    message = str(raised.value)
    assert "Reconnect this workspace to google_analytics" in message
    assert "invalid_grant" in message and "revoked" in message


def test_wrong_client_secret_names_what_to_check(sandbox, server) -> None:
    with (
        session_for(sandbox, server, secret="GOCSPX-wrong-secret") as session,
        pytest.raises(ProviderAuthError, match="check the client id and secret"),
    ):
        session.access_token()


def test_concurrent_callers_share_one_refresh(sandbox, server) -> None:
    sandbox.add_fault(Fault("delay", api="oauth", delay=0.3))  # a slow token endpoint
    threads = 16
    barrier = threading.Barrier(threads)
    with session_for(sandbox, server) as session:

        def token(_: int) -> str:
            barrier.wait()
            return session.access_token()

        with ThreadPoolExecutor(threads) as pool:
            tokens = set(pool.map(token, range(threads)))
        assert len(tokens) == 1
        assert issued(sandbox) == 1 and session.refreshes == 1


def test_concurrent_401s_cause_one_refresh(sandbox, server) -> None:
    threads = 12
    recorder = Recorder()
    with session_for(sandbox, server) as session, api_client(server, session, recorder) as client:
        client.post(REPORT, json=BODY)
        sandbox.expire_access_tokens()
        barrier = threading.Barrier(threads)

        def call(_: int) -> int:
            barrier.wait()
            return client.post(REPORT, json=BODY).status_code

        with ThreadPoolExecutor(threads) as pool:
            assert set(pool.map(call, range(threads))) == {200}
    assert issued(sandbox) == 2  # the first token, and one refresh for all twelve 401s


def test_token_endpoint_outage_is_retried_then_reported(sandbox, server) -> None:
    sandbox.add_fault(Fault("status", api="oauth", status=503, times=2))
    with session_for(sandbox, server) as session:
        assert session.access_token()
    sandbox.add_fault(Fault("status", api="oauth", status=503, times=10))
    with (
        session_for(sandbox, server, max_attempts=3) as session,
        pytest.raises(ProviderUnavailable, match=r"token endpoint failed: HTTP 503"),
    ):
        session.access_token()


def test_no_secret_or_token_reaches_logs_or_exceptions(sandbox, server, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    recorder = Recorder()
    with session_for(sandbox, server) as session, api_client(server, session, recorder) as client:
        client.post(REPORT, json=BODY)
        sandbox.expire_access_tokens()
        client.post(REPORT, json=BODY)
        sandbox.add_fault(Fault("status", api="oauth", status=500, times=1))
        session.refresh()
        sandbox.revoke(sandbox.test_refresh_token)
        try:
            client.post(REPORT, json=BODY)
        except ProviderAuthError as exc:
            errors.append(exc)
        reprs = [repr(session), repr(session.auth())]
    assert errors, "the revoked token should have failed"
    with session_for(sandbox, server, secret="GOCSPX-a-wrong-secret-value") as bad:
        try:
            bad.access_token()
        except ProviderAuthError as exc:
            errors.append(exc)
    secrets = [
        DEMO_CLIENT_SECRET,
        "GOCSPX-a-wrong-secret-value",
        sandbox.test_refresh_token,  # type: ignore[attr-defined]
        *sandbox.oauth.access_tokens,
    ]
    texts = [caplog.text, *reprs, *(str(e) for e in errors), *(repr(e) for e in errors)]
    credentials = OAuth2Credentials(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, "1//x" * 10, "http://t")
    texts.append(repr(credentials))
    assert "access token refreshed" in caplog.text
    for text in texts:
        for secret in secrets:
            assert secret not in text


def test_credentials_come_from_the_variables_the_connection_names(monkeypatch) -> None:
    monkeypatch.setenv("WS_ACME__GOOGLE_ID", "id-123.apps.googleusercontent.com")
    monkeypatch.setenv("WS_ACME__GOOGLE_SECRET", "GOCSPX-acme-secret")
    monkeypatch.setenv("WS_ACME__GOOGLE_REFRESH", "1//acme-refresh-token-value")
    connection = Connection(
        workspace_id="acme",
        provider="google_analytics",
        secret_env={
            "client_id": "WS_ACME__GOOGLE_ID",
            "client_secret": "WS_ACME__GOOGLE_SECRET",
            "refresh_token": "WS_ACME__GOOGLE_REFRESH",
        },
    )
    credentials = OAuth2Credentials.from_connection(connection, token_url=google_token_url())
    assert credentials.client_secret == "GOCSPX-acme-secret"
    assert credentials.refresh_token == "1//acme-refresh-token-value"
    assert "GOCSPX-acme-secret" not in repr(credentials)


def test_the_oauth_client_is_the_operators_unless_the_connection_names_its_own(
    monkeypatch,
) -> None:
    monkeypatch.setenv("KPI_GOOGLE_CLIENT_ID", "operator.apps.googleusercontent.com")
    monkeypatch.setenv("KPI_GOOGLE_CLIENT_SECRET", "GOCSPX-operator")
    monkeypatch.setenv("WS_ACME__GOOGLE_REFRESH", "1//acme-refresh-token-value")
    connection = Connection(
        workspace_id="acme",
        provider="google_analytics",
        secret_env={"refresh_token": "WS_ACME__GOOGLE_REFRESH"},
    )
    credentials = OAuth2Credentials.from_connection(
        connection, token_url=google_token_url(), client_variables=GOOGLE_CLIENT_VARIABLES
    )
    assert credentials.client_id == "operator.apps.googleusercontent.com"
    assert credentials.client_secret == "GOCSPX-operator"


@pytest.mark.parametrize(
    "url",
    ["http://attacker.example/token", "ftp://127.0.0.1/token", "file:///etc/passwd", "token"],
)
def test_token_and_api_hosts_are_https_except_on_loopback(monkeypatch, url: str) -> None:
    monkeypatch.setenv("KPI_GOOGLE_TOKEN_URL", url)
    with pytest.raises(ValueError, match="KPI_GOOGLE_TOKEN_URL must be an https:// address"):
        google_token_url()
    monkeypatch.setenv("KPI_GOOGLE_ANALYTICS_BASE_URL", url)
    with pytest.raises(ValueError, match="KPI_GOOGLE_ANALYTICS_BASE_URL must be an https://"):
        provider_base_url("google_analytics", "https://analyticsdata.googleapis.com")
    for fine in ("https://proxy.internal:8443", "http://127.0.0.1:9", "http://[::1]:9"):
        assert provider_base_url("google_analytics", "https://x", configured=fine) == fine


def test_token_url_is_configurable(monkeypatch) -> None:
    monkeypatch.delenv("KPI_GOOGLE_TOKEN_URL", raising=False)
    assert google_token_url() == DEFAULT_GOOGLE_TOKEN_URL == "https://oauth2.googleapis.com/token"
    monkeypatch.setenv("KPI_GOOGLE_TOKEN_URL", "http://127.0.0.1:9/token")
    assert google_token_url() == "http://127.0.0.1:9/token"


def test_a_flow_declares_how_its_token_endpoint_says_a_grant_is_gone() -> None:
    """LinkedIn answers a dead refresh token with `invalid_request`, not `invalid_grant`:
    its OAuthFlow's grant_gone says so, and the sync ends with the reconnect message; a
    session told nothing keeps RFC 6749's reading (a request error, not retried)."""
    sandbox = LinkedInSandbox()
    sandbox.register_client("client-1", "secret-1")
    sandbox.add_member("member-1", refresh_token="AQXdead", client_id="client-1")
    sandbox.revoke_member("member-1")
    linkedin_like = (("invalid_request", "The provided authorization grant or refresh token"),)
    with LoopbackServer(create_linkedin_app(sandbox)) as server:
        credentials = OAuth2Credentials(
            client_id="client-1",
            client_secret="secret-1",
            refresh_token="AQXdead",
            token_url=server.url("/oauth/v2/accessToken"),
        )
        for gone, error in ((linkedin_like, ProviderAuthError), ((), ProviderRequestError)):
            with (
                OAuth2Session("linkedin_ads", credentials, grant_gone=gone) as session,
                pytest.raises(error) as raised,
            ):
                session.access_token()
            assert ("Reconnect this workspace" in str(raised.value)) is bool(gone)
