"""LinkedIn's token endpoint: the refresh grant, a refresh token that keeps its 365 days
(not sliding), access tokens of 60 days that never outlive it, and LinkedIn's own error
bodies (a dead refresh token is `invalid_request`, not `invalid_grant`)."""

from __future__ import annotations

from kpi_pipelines_tests.sandbox.linkedin.conftest import ACCOUNT, MEMBER, REFRESH, Served

GONE = "The provided authorization grant or refresh token is invalid, expired or revoked"
DAY = 86_400


def test_a_refresh_gives_a_60_day_token_and_the_same_refresh_token(served: Served) -> None:
    body = served.refresh().json()
    assert body["expires_in"] == 60 * DAY
    assert body["refresh_token"] == REFRESH
    assert body["refresh_token_expires_in"] == 365 * DAY
    assert body["scope"] == "r_ads,r_ads_reporting"
    assert body["access_token"].startswith("AQV")
    assert served.ok(f"/rest/adAccounts/{ACCOUNT}", body["access_token"])["id"] == int(ACCOUNT)


def test_the_refresh_token_lifetime_does_not_slide(served: Served) -> None:
    served.sandbox.clock.advance(hours=59 * 24)
    assert served.refresh().json()["refresh_token_expires_in"] == 306 * DAY
    served.sandbox.clock.advance(hours=301 * 24)  # day 360: both end in 5 days
    body = served.refresh().json()
    assert body["refresh_token_expires_in"] == body["expires_in"] == 5 * DAY
    served.sandbox.clock.advance(hours=5 * 24)
    assert served.refresh().json() == {"error": "invalid_request", "error_description": GONE}


def test_a_revoked_grant_and_bad_clients_get_linkedins_bodies(served: Served) -> None:
    assert served.refresh(client_secret="wrong").status_code == 401
    assert served.refresh(client_secret="wrong").json()["error"] == "invalid_client"
    assert served.refresh("AQXnot-a-token").json()["error_description"] == GONE
    missing = served.refresh(refresh_token="")
    assert missing.status_code == 400 and "refresh_token" in missing.json()["error_description"]
    assert served.refresh(grant_type="client_credentials").json()["error"] == (
        "unsupported_grant_type"
    )
    token = served.token()
    served.sandbox.revoke_member(MEMBER)
    response = served.refresh()
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")
    assert served.get(f"/rest/adAccounts/{ACCOUNT}", token).json()["code"] == (
        "REVOKED_ACCESS_TOKEN"
    )
