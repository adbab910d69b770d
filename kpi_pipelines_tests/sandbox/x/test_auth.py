"""OAuth 1.0a as X checks it: the signature over the request as sent, the app and the
token, a fresh timestamp, a nonce used once; anything else is X's 401 body."""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import replace

import httpx
import pytest
from authlib.oauth1 import ClientAuth

from kpi_pipelines_tests.sandbox.x.conftest import ACCOUNT, CONSUMER_KEY, Signed, XWorld

UNAUTHORIZED = {
    "errors": [
        {"code": "UNAUTHORIZED_ACCESS", "message": "This request is not properly authenticated"}
    ],
    "request": {"params": {}},
}


class Fixed(httpx.Auth):
    """Signs with a chosen nonce and timestamp (authlib's own signature)."""

    def __init__(self, x: XWorld, *, nonce: str, timestamp: int) -> None:
        self.client = ClientAuth(
            CONSUMER_KEY,
            client_secret="sandbox-consumer-secret",
            token=x.grant.token,
            token_secret=x.grant.token_secret,
        )
        self.nonce, self.timestamp = nonce, str(timestamp)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        params = self.client.get_oauth_params(self.nonce, self.timestamp)
        uri, headers, _ = self.client._render(str(request.url), {}, b"", params)
        signature = self.client.get_oauth_signature(request.method, uri, headers, b"")
        _, headers, _ = self.client._render(
            str(request.url), {}, b"", [*params, ("oauth_signature", signature)]
        )
        request.headers["Authorization"] = headers["Authorization"]
        yield request


def test_a_properly_signed_request_is_answered(x: XWorld) -> None:
    response = x.get(f"/12/accounts/{ACCOUNT}")
    assert response.status_code == 200
    assert response.json()["data"]["timezone"] == "Asia/Tokyo"


@pytest.mark.parametrize(
    "auth",
    [
        pytest.param(lambda x: None, id="unsigned"),
        pytest.param(
            lambda x: Signed(x.grant, consumer_secret="not-the-secret"), id="bad-signature"
        ),
    ],
)
def test_an_unsigned_or_badly_signed_request_gets_xs_401(x: XWorld, auth) -> None:
    with httpx.Client(base_url=x.server.base_url, auth=auth(x)) as client:
        response = client.get(f"/12/accounts/{ACCOUNT}")
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED


def test_a_signature_covers_the_query(x: XWorld) -> None:
    """A parameter changed after signing (a tampered count) breaks the signature."""

    class Tampered(Signed):
        def auth_flow(self, request):  # type: ignore[no-untyped-def]
            signed = next(super().auth_flow(request))
            signed.url = signed.url.copy_set_param("count", "1000")
            yield signed

    with x.client(Tampered(x.grant)) as client:
        response = client.get(f"/12/accounts/{ACCOUNT}/campaigns", params={"count": "5"})
    assert response.status_code == 401


def test_a_stale_timestamp_or_a_reused_nonce_is_refused(x: XWorld) -> None:
    now = int(time.time())
    with x.client(Fixed(x, nonce="n-stale", timestamp=now - 600)) as client:
        assert client.get(f"/12/accounts/{ACCOUNT}").status_code == 401
    with x.client(Fixed(x, nonce="n-future", timestamp=now + 600)) as client:
        assert client.get(f"/12/accounts/{ACCOUNT}").status_code == 401
    with x.client(Fixed(x, nonce="n-once", timestamp=now)) as client:
        assert client.get(f"/12/accounts/{ACCOUNT}").status_code == 200
        replay = client.get(f"/12/accounts/{ACCOUNT}")
    assert replay.status_code == 401 and replay.json() == UNAUTHORIZED


def test_a_revoked_token_gets_401_and_another_users_account_403(x: XWorld) -> None:
    other = x.sandbox.add_account("2iqph", campaigns=1)
    response = x.get(f"/12/accounts/{other.account_id}")
    assert response.status_code == 403
    assert response.json()["errors"][0]["code"] == "ACCOUNT_NOT_FOUND"
    assert x.get("/12/accounts/nope").json()["errors"][0]["code"] == "ACCOUNT_NOT_FOUND"
    x.sandbox.revoke(x.grant.token)
    response = x.get(f"/12/accounts/{ACCOUNT}")
    assert (response.status_code, response.json()) == (401, UNAUTHORIZED)


def test_a_token_of_another_app_is_refused(x: XWorld) -> None:
    x.sandbox.register_app("other-app", "other-secret")
    grant = x.sandbox.authorize("other-app", ACCOUNT)
    with x.client(Signed(grant, consumer_secret="other-secret")) as client:
        assert client.get(f"/12/accounts/{ACCOUNT}").status_code == 200
    as_ours = replace(grant, consumer_key=CONSUMER_KEY)  # its token, signed as our app
    with x.client(Signed(as_ours)) as client:
        assert client.get(f"/12/accounts/{ACCOUNT}").status_code == 401
