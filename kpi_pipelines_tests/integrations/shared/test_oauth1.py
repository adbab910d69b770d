"""OAuth 1.0a signing against the X sandbox, which verifies signatures with authlib's
resource protector: every request and every retry signed afresh, credentials read from the
variables a connection names (the app's from the operator's), never shown."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kpi_pipelines.integrations.shared.errors import ProviderAuthError
from kpi_pipelines.integrations.shared.http import ProviderHttpClient
from kpi_pipelines.integrations.shared.oauth1 import OAuth1Credentials, oauth1_secrets
from kpi_pipelines.integrations.shared.redaction import redact
from kpi_pipelines.integrations.shared.secrets import MissingSecret
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.sandbox.x import Grant, XSandbox, create_x_app
from kpi_pipelines.warehouse.control import Connection

APP = {"consumer_key": "KPI_TEST_CONSUMER_KEY", "consumer_secret": "KPI_TEST_CONSUMER_SECRET"}
ACCOUNT_PATH = "/12/accounts/18ce54d4x5t"


@pytest.fixture
def served() -> Iterator[tuple[XSandbox, LoopbackServer, Grant]]:
    sandbox = XSandbox(seed=1)
    sandbox.register_app("operator-app-key", "operator-app-secret-123")
    sandbox.add_account("18ce54d4x5t", campaigns=2)
    grant = sandbox.authorize("operator-app-key", "18ce54d4x5t")
    with LoopbackServer(create_x_app(sandbox)) as server:
        yield sandbox, server, grant


def connection(monkeypatch: pytest.MonkeyPatch, grant: Grant, **own: str) -> Connection:
    monkeypatch.setenv(APP["consumer_key"], "operator-app-key")
    monkeypatch.setenv(APP["consumer_secret"], "operator-app-secret-123")
    monkeypatch.setenv("WS_T1__X_TOKEN", grant.token)
    monkeypatch.setenv("WS_T1__X_TOKEN_SECRET", grant.token_secret)
    names = {"access_token": "WS_T1__X_TOKEN", "access_token_secret": "WS_T1__X_TOKEN_SECRET"}
    for purpose, value in own.items():
        monkeypatch.setenv(f"WS_T1__X_{purpose.upper()}", value)
        names[purpose] = f"WS_T1__X_{purpose.upper()}"
    return Connection(workspace_id="t1", provider="x_ads", secret_env=names)


def test_each_request_and_each_retry_is_signed_afresh(served, monkeypatch) -> None:
    sandbox, server, grant = served
    credentials = OAuth1Credentials.from_connection(connection(monkeypatch, grant), APP)
    sandbox.faults.storm(2, 503, api="accounts")
    with ProviderHttpClient(
        "x_ads", server.base_url, auth=credentials.auth(), cache=False, backoff_base=0.01
    ) as client:
        first = client.get_json(ACCOUNT_PATH)
        second = client.get_json(ACCOUNT_PATH)  # the same request, a new nonce
        assert client.stats.retries == 2
    assert first["data"]["id"] == second["data"]["id"] == "18ce54d4x5t"
    assert redact(grant.token_secret) != grant.token_secret  # registered for redaction
    assert redact("operator-app-secret-123") != "operator-app-secret-123"


def test_a_workspaces_own_app_replaces_the_operators(served, monkeypatch) -> None:
    sandbox, server, _ = served
    sandbox.register_app("own-app-key", "own-app-secret-456")
    grant = sandbox.authorize("own-app-key", "18ce54d4x5t")
    own = {"consumer_key": "own-app-key", "consumer_secret": "own-app-secret-456"}
    credentials = OAuth1Credentials.from_connection(connection(monkeypatch, grant, **own), APP)
    with ProviderHttpClient("x_ads", server.base_url, auth=credentials.auth()) as client:
        assert client.get_json(ACCOUNT_PATH)["data"]["id"] == "18ce54d4x5t"


def test_a_wrong_secret_is_the_providers_401_and_a_missing_one_is_named(
    served, monkeypatch
) -> None:
    _, server, grant = served
    wrong = connection(monkeypatch, grant, access_token_secret="not-the-token-secret")
    credentials = OAuth1Credentials.from_connection(wrong, APP)
    with (
        ProviderHttpClient("x_ads", server.base_url, auth=credentials.auth()) as client,
        pytest.raises(ProviderAuthError, match="UNAUTHORIZED_ACCESS") as failure,
    ):
        client.get_json(ACCOUNT_PATH)
    assert "not-the-token-secret" not in str(failure.value)
    unset = connection(monkeypatch, grant)
    monkeypatch.delenv(APP["consumer_secret"])
    with pytest.raises(MissingSecret, match=APP["consumer_secret"]):
        OAuth1Credentials.from_connection(unset, APP)


def test_the_secrets_a_connection_names() -> None:
    specs = {s.purpose: s.operator_variable for s in oauth1_secrets(APP)}
    assert specs == {
        "access_token": None,
        "access_token_secret": None,
        "consumer_key": "KPI_TEST_CONSUMER_KEY",
        "consumer_secret": "KPI_TEST_CONSUMER_SECRET",
    }
