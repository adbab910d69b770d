"""`kpi-pipelines connect` for GA4 against the Google sandbox's consent page and token
endpoint: the real CLI (a process) with the test as the browser, then GA4 syncs on the
stored grant; PKCE and state as the simulator checks them, a forged callback, a reused or
mismatched code, a refused consent, no answer, and a grant the user revoked."""

from __future__ import annotations

import os
import subprocess
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from authlib.common.security import generate_token
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from kpi_pipelines.cli import app
from kpi_pipelines.integrations.google_analytics.spec import SPEC
from kpi_pipelines.integrations.shared.errors import ProviderAuthError
from kpi_pipelines.integrations.shared.grants import GRANT_KEYS_VARIABLE, Grant
from kpi_pipelines.integrations.shared.oauth import OAuth2Credentials, exchange_code
from kpi_pipelines.integrations.shared.oauth_connect import (
    ConsentRefused,
    ConsentTimeout,
    consent_url,
)
from kpi_pipelines.integrations.shared.redaction import register_secret
from kpi_pipelines.sandbox.google import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from kpi_pipelines.sandbox.google.oauth import ANALYTICS_READONLY
from kpi_pipelines_tests.canary import canaries
from kpi_pipelines_tests.integrations.google_analytics.conftest import GA4World
from kpi_pipelines_tests.integrations.google_sandbox import browser_forging_state
from kpi_pipelines_tests.processes import cli_path
from kpi_pipelines_tests.run_results import failure_message

FLOW = SPEC.oauth
assert FLOW is not None
REDIRECT = "http://127.0.0.1:47021/callback"


def stored_grants(world: GA4World) -> list[sa.Row]:
    with world.warehouse.engine(None).connect() as db:
        return db.execute(
            sa.text(
                "SELECT g.workspace_id, g.provider, g.sealed, g.version, g.granted_by,"
                " g.updated_by FROM kpi.oauth_grants g ORDER BY g.workspace_id"
            )
        ).all()


def opened(row: sa.Row) -> Grant:
    key = os.environ[GRANT_KEYS_VARIABLE].split(",")[0]
    return Grant.model_validate_json(Fernet(key).decrypt(bytes(row.sealed)))


def token_grants(world: GA4World) -> list[str]:
    return [r.grant_type for r in world.sandbox.oauth.requests if r.status == 200]


def _connect_cli(workspace_id: str, browser, *extra: str) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    """`kpi-pipelines connect WORKSPACE google_analytics --no-browser` as a process with
    this test's environment (the session's warehouse, the sandbox's hosts, the key); the
    address it prints goes to `browser`. Its output is printed for the secret canary."""
    process = subprocess.Popen(
        [cli_path(), "connect", workspace_id, "google_analytics", "--no-browser", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=dict(os.environ),
    )
    assert process.stdout is not None
    shown = []
    try:
        for line in process.stdout:
            shown.append(line)
            if line.startswith("http"):
                browser(line.strip())
                break
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    completed = subprocess.CompletedProcess(
        process.args, process.returncode, "".join(shown) + out, err
    )
    print(completed.stdout, completed.stderr)
    return completed


def test_connect_through_the_cli_then_ga4_syncs_on_the_stored_grant(ga4: GA4World) -> None:
    prop = ga4.property("3001", history_days=20)
    ga4.unconnected("ws-cli", {"property_id": "3001", "lookback_days": 3})
    pages: list[httpx.Response] = []

    def browser(url: str) -> None:
        query = parse_qs(urlsplit(url).query)
        # the consent page is asked for a code with PKCE (S256), a state and offline access
        assert query["code_challenge_method"] == ["S256"] and len(query["state"][0]) >= 32
        assert query["scope"] == [ANALYTICS_READONLY] and query["access_type"] == ["offline"]
        assert query["redirect_uri"][0].startswith("http://127.0.0.1:")
        assert "code_verifier" not in query
        pages.append(httpx.get(url, follow_redirects=True, timeout=30))

    connected = _connect_cli("ws-cli", browser)
    assert connected.returncode == 0, connected.stderr
    assert "google_analytics access granted for workspace ws-cli" in connected.stdout
    assert pages[0].status_code == 200 and "received the grant" in pages[0].text
    # the simulator checked the verifier against the challenge of the consent
    [issued] = ga4.sandbox.oauth.consent.codes
    assert issued.redeemed and issued.verified and issued.code_challenge_method == "S256"
    [row] = stored_grants(ga4)
    assert (row.workspace_id, row.provider, row.version) == ("ws-cli", "google_analytics", 1)
    assert row.granted_by.startswith("user:")
    assert opened(row).refresh_token == issued.grant

    # GA4 syncs on the stored grant: its access token first (no token request at all) ...
    assert ga4.sync("ws-cli", {"history_days": 10}).success
    assert token_grants(ga4) == ["authorization_code"]
    # ... then, once Google no longer takes it, a refresh recorded in the grant
    ga4.sandbox.expire_access_tokens()
    assert ga4.sync("ws-cli", {"history_days": 10}).success
    assert token_grants(ga4) == ["authorization_code", "refresh_token"]
    [row] = stored_grants(ga4)
    assert row.version == 2 and row.updated_by.startswith("run:")
    assert opened(row).access_token in ga4.sandbox.oauth.access_tokens
    assert prop.reports_served > 0
    # the secret canary looks for every token of this grant (and the spent code) in the
    # output, the logs, every table (the grants' holds only ciphertext) and Dagster's events
    register_secret(issued.code)
    tokens = {issued.code, issued.grant, opened(row).access_token, *ga4.sandbox.oauth.access_tokens}
    assert tokens <= set(canaries())


def test_a_refused_consent_fails_connect_in_one_line_and_stores_nothing(ga4: GA4World) -> None:
    ga4.unconnected("ws-deny", {"property_id": "3002"})
    ga4.sandbox.oauth.consent.answer = "deny"
    refused = _connect_cli("ws-deny", lambda url: httpx.get(url, follow_redirects=True))
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "error: access was not granted on google_analytics's consent page (access_denied):"
        " nothing was stored"
    ]
    assert stored_grants(ga4) == []


def test_a_callback_with_a_forged_state_is_refused_and_its_code_never_exchanged(
    ga4: GA4World,
) -> None:
    ga4.property("3003", history_days=5)
    forged: list[httpx.Response] = []

    connected = ga4.connect_with_consent(
        "ws-a", {"property_id": "3003"}, browser=browser_forging_state(forged)
    )
    assert connected.has_refresh_token
    assert [page.status_code for page in forged] == [400, 400, 400]
    assert all("state does not match" in page.text for page in forged)
    genuine, attackers = ga4.sandbox.oauth.consent.codes
    assert genuine.redeemed and not attackers.redeemed  # the forged code was never sent
    assert token_grants(ga4) == ["authorization_code"]
    assert opened(stored_grants(ga4)[0]).refresh_token == genuine.grant


def test_a_code_is_exchanged_once_and_only_with_its_verifier_and_redirect(
    ga4: GA4World,
) -> None:
    client = OAuth2Credentials(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, None, FLOW.token_endpoint())

    def code_for(verifier: str) -> str:
        url = consent_url(
            FLOW, DEMO_CLIENT_ID, redirect_uri=REDIRECT, state="s" * 32, code_verifier=verifier
        )
        return parse_qs(urlsplit(httpx.get(url).headers["location"]).query)["code"][0]

    verifier = generate_token(64)
    code = code_for(verifier)
    token = exchange_code(
        "google_analytics", FLOW, client, code=code, redirect_uri=REDIRECT, code_verifier=verifier
    )
    assert token.refresh_token and token.scope == ANALYTICS_READONLY
    with pytest.raises(
        ProviderAuthError,
        match=r"refused the authorization code \(invalid_grant: Bad Request; a code is exchanged"
        r" once, within minutes of its consent, with the verifier of its challenge",
    ):
        exchange_code(
            "google_analytics",
            FLOW,
            client,
            code=code,
            redirect_uri=REDIRECT,
            code_verifier=verifier,
        )
    with pytest.raises(ProviderAuthError, match="invalid_grant: Invalid code verifier"):
        exchange_code(
            "google_analytics",
            FLOW,
            client,
            code=code_for(verifier),
            redirect_uri=REDIRECT,
            code_verifier=generate_token(64),
        )
    with pytest.raises(
        ProviderAuthError,
        match="redirect_uri_mismatch: Bad Request; the redirect address differs from the consent",
    ):
        exchange_code(
            "google_analytics",
            FLOW,
            client,
            code=code_for(verifier),
            redirect_uri="http://127.0.0.1:47022/callback",
            code_verifier=verifier,
        )
    assert token_grants(ga4) == ["authorization_code"]


def test_no_answer_in_time_stores_nothing(ga4: GA4World) -> None:
    with pytest.raises(ConsentTimeout, match="no answer from the consent page within 1 s"):
        ga4.connect_with_consent(
            "ws-a", {"property_id": "3004"}, browser=lambda url: None, timeout=1
        )
    assert stored_grants(ga4) == []


def test_a_consent_that_leaves_the_scope_unchecked_is_refused(ga4: GA4World) -> None:
    def uncheck_the_scope(url: str) -> None:
        parts = urlsplit(url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        query["scope"] = "https://www.googleapis.com/auth/drive.readonly"
        httpx.get(parts._replace(query=urlencode(query)).geturl(), follow_redirects=True)

    with pytest.raises(ConsentRefused, match=r"did not grant .*analytics\.readonly"):
        ga4.connect_with_consent("ws-a", {"property_id": "3005"}, browser=uncheck_the_scope)
    assert stored_grants(ga4) == []


def test_a_revoked_grant_fails_the_sync_saying_to_connect_again(ga4: GA4World) -> None:
    ga4.property("3006", history_days=5)
    ga4.connect_with_consent("ws-r", {"property_id": "3006"})
    assert ga4.sync("ws-r").success
    ga4.sandbox.revoke(ga4.sandbox.oauth.consent.codes[-1].grant)  # the user removed access
    result = ga4.sync("ws-r")
    assert not result.success
    message = failure_message(result)
    assert "Reconnect this workspace to google_analytics" in message
    assert "invalid_grant" in message
    assert "grant access again with `kpi-pipelines connect ws-r google_analytics`" in message
    assert stored_grants(ga4)[0].version == 1  # the refused refresh changed nothing


def test_connect_says_in_one_line_what_it_cannot_connect(ga4: GA4World) -> None:
    ga4.unconnected("ws-e", {"property_id": "3007"})
    expected = {
        "stripe": "error: stripe does not grant access through a consent page (api key): name"
        " its secrets with `kpi-pipelines connection add ws-e stripe --secret ...`",
        "google_sheets": "error: workspace 'ws-e' has no google_sheets connection; add one with"
        " `kpi-pipelines connection add ws-e google_sheets ...`",
    }
    for provider, error in expected.items():
        failed = CliRunner().invoke(app, ["connect", "ws-e", provider, "--no-browser"])
        print(failed.output)
        assert failed.exit_code == 1 and failed.output.strip().splitlines() == [error]
    failed = CliRunner().invoke(app, ["connect", "ws-none", "google_analytics", "--no-browser"])
    assert failed.exit_code == 1
    assert failed.output.strip() == "error: workspace 'ws-none' does not exist"
    assert ga4.sandbox.oauth.consent.codes == [] and stored_grants(ga4) == []
