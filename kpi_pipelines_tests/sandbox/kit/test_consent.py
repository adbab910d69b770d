"""The kit's consent desk: one-time codes on the simulated clock, bound to their client and
redirect, PKCE checked by RFC 7636's comparisons, loopback redirects on any port, and the
redirect back with the state as it came."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

from authlib.oauth2.rfc7636 import create_s256_code_challenge

from kpi_pipelines.sandbox.kit import AuthorizationRequest, ConsentDesk, IssuedCode, SimClock
from kpi_pipelines.sandbox.kit.consent import redirect_allowed

START = datetime(2025, 6, 15, 12, tzinfo=UTC)
VERIFIER = "v" * 20 + "-._~" + "0123456789abcdefghij"  # 44 unreserved characters
REDIRECT = "http://127.0.0.1:51234/callback"


def _request(**query: str) -> AuthorizationRequest:
    base = {
        "client_id": "client-1",
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "read write",
        "state": "st&te=1 x",
        "code_challenge": create_s256_code_challenge(VERIFIER),
        "code_challenge_method": "S256",
    }
    return AuthorizationRequest.parse({**base, **query})


def _redeem(desk: ConsentDesk, code: str, **changes: str | None) -> IssuedCode | str:
    fields: dict[str, str | None] = {
        "client_id": "client-1",
        "redirect_uri": REDIRECT,
        "code_verifier": VERIFIER,
        **changes,
    }
    return desk.redeem(code, **fields)  # type: ignore[arg-type]


def test_a_code_is_exchanged_once_with_the_verifier_of_its_challenge() -> None:
    desk = ConsentDesk(SimClock(START), code_prefix="4/0A")
    request = _request()
    assert request.scopes == ("read", "write")
    issued = desk.issue(request, subject="user@example.com")
    assert issued.code.startswith("4/0A") and desk.codes == [issued]
    redeemed = _redeem(desk, issued.code)
    assert redeemed is issued and issued.redeemed and issued.verified
    assert _redeem(desk, issued.code) == "reused"


def test_what_the_token_endpoint_refuses_a_code_for() -> None:
    clock = SimClock(START)
    desk = ConsentDesk(clock, lifetime=600)
    assert _redeem(desk, "") == "missing"
    assert _redeem(desk, "never-issued") == "unknown"
    other = desk.issue(_request(), subject="u")
    # another client's attempt does not spend the code
    assert _redeem(desk, other.code, client_id="client-2") == "wrong_client"
    assert _redeem(desk, other.code) is other
    assert _redeem(desk, desk.issue(_request(), subject="u").code, redirect_uri=None) == (
        "redirect_mismatch"
    )
    assert (
        _redeem(
            desk,
            desk.issue(_request(), subject="u").code,
            redirect_uri="http://127.0.0.1:51235/callback",
        )
        == "redirect_mismatch"
    )
    missing = desk.issue(_request(), subject="u")
    assert _redeem(desk, missing.code, code_verifier=None) == "verifier_missing"
    wrong = desk.issue(_request(), subject="u")
    assert _redeem(desk, wrong.code, code_verifier="w" * 44) == "verifier_mismatch"
    assert _redeem(desk, wrong.code) == "reused"  # a wrong verifier spent it: no guessing
    expiring = desk.issue(_request(), subject="u")
    clock.advance(seconds=601)
    assert _redeem(desk, expiring.code) == "expired"


def test_plain_and_absent_challenges() -> None:
    desk = ConsentDesk(SimClock(START))
    plain = desk.issue(
        _request(code_challenge=VERIFIER, code_challenge_method=""), subject="u"
    )  # RFC 7636 4.3: no method is plain
    assert plain.code_challenge_method == "plain"
    assert _redeem(desk, plain.code) is plain and plain.verified
    unchallenged = desk.issue(_request(code_challenge="", code_challenge_method=""), subject="u")
    assert _redeem(desk, unchallenged.code, code_verifier=None) is unchallenged
    assert not unchallenged.verified


def test_the_consent_request_problems_it_must_not_redirect() -> None:
    loopback = ("http://127.0.0.1",)
    assert _request().problem(loopback) is None
    assert _request(client_id="").problem(loopback) == "client_id"
    assert _request(redirect_uri="https://evil.example/cb").problem(loopback) == "redirect_uri"
    assert _request(response_type="token").problem(loopback) == "response_type"
    assert _request(code_challenge_method="S512").problem(loopback) == "code_challenge_method"
    assert _request(code_challenge="short").problem(loopback) == "code_challenge"


def test_loopback_redirects_take_any_port_but_nothing_else() -> None:
    desktop = ("http://127.0.0.1", "http://[::1]")
    assert redirect_allowed(desktop, "http://127.0.0.1:8123/callback")
    assert redirect_allowed(desktop, "http://[::1]:9/cb")
    assert not redirect_allowed(desktop, "http://localhost:8123/callback")  # a name, not an IP
    assert not redirect_allowed(desktop, "https://127.0.0.1:8123/callback")
    assert not redirect_allowed(desktop, "http://127.0.0.1.evil.example:80/callback")
    assert not redirect_allowed(desktop, "http://127.0.0.1:8123/cb#fragment")
    assert not redirect_allowed(desktop, "http://127.0.0.1:99999/callback")
    assert not redirect_allowed(desktop, "")
    web = ("https://app.example/oauth/callback", "http://127.0.0.1/callback")
    assert redirect_allowed(web, "https://app.example/oauth/callback")
    assert not redirect_allowed(web, "https://app.example/oauth/callback/")
    assert redirect_allowed(web, "http://127.0.0.1:4000/callback")
    assert not redirect_allowed(web, "http://127.0.0.1:4000/other")


def test_the_redirect_back_echoes_the_state_as_it_came() -> None:
    desk = ConsentDesk(SimClock(START))
    request = _request()
    issued = desk.issue(request, subject="u")
    back = desk.redirect(request, code=issued.code)
    assert back.status_code == 302 and back.headers["cache-control"] == "no-store"
    target = urlsplit(back.headers["location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == REDIRECT
    assert parse_qs(target.query) == {"code": [issued.code], "state": ["st&te=1 x"]}
    refused = desk.redirect(_request(state=""), error="access_denied")
    assert parse_qs(urlsplit(refused.headers["location"]).query, keep_blank_values=True) == {
        "error": ["access_denied"],
        "state": [""],
    }
