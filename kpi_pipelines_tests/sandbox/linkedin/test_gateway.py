"""What LinkedIn's gateway answers before a request reaches its resource: the version
header, the Rest.li protocol header, the bearer token and the daily limits."""

from __future__ import annotations

from datetime import UTC, datetime

from kpi_pipelines_tests.sandbox.linkedin.conftest import ACCOUNT, CLIENT, MEMBER, REFRESH, Served

PATH = f"/rest/adAccounts/{ACCOUNT}"


def test_a_missing_version_and_a_sunset_one(served: Served) -> None:
    missing = served.get(PATH, LinkedIn_Version="")
    assert missing.status_code == 400 and missing.json()["code"] == "VERSION_MISSING"
    assert missing.headers["x-restli-gateway-error"] == "true"
    old = served.get(PATH, LinkedIn_Version="202501")
    assert old.status_code == 426
    assert old.json() == {
        "status": 426,
        "code": "NONEXISTENT_VERSION",
        "message": "Requested version 20250101 is not active",
    }
    assert served.get(PATH, LinkedIn_Version="202612").status_code == 426  # not released yet
    assert served.get(PATH, LinkedIn_Version="202611.01").status_code == 200
    served.sandbox.sunset("202611")
    assert served.get(PATH).status_code == 426


def test_a_version_is_served_for_a_year(served: Served) -> None:
    sandbox = served.sandbox
    assert sandbox.version_active("202512") and sandbox.version_active("202611")
    sandbox.clock.advance_to(datetime(2027, 11, 15, tzinfo=UTC))
    assert not sandbox.version_active("202611") and sandbox.version_active("202612")


def test_without_the_protocol_header_the_query_is_not_read(served: Served) -> None:
    response = served.get(PATH, X_Restli_Protocol_Version="")
    assert response.status_code == 400
    assert response.json()["errorDetails"]["inputErrors"][0]["code"] == "PARAM_INVALID"


def test_the_tokens_problems(served: Served) -> None:
    token = served.token()
    assert served.get(PATH, "AQVunknown").json()["serviceErrorCode"] == 65600
    assert served.get(PATH, REFRESH).json()["code"] == "INVALID_ACCESS_TOKEN"
    assert served.get(PATH, Authorization="").json()["code"] == ("EMPTY_ACCESS_TOKEN")
    served.sandbox.clock.advance(hours=60 * 24)
    expired = served.get(PATH, token)
    assert (expired.status_code, expired.json()["serviceErrorCode"]) == (401, 65602)
    assert expired.json()["code"] == "EXPIRED_ACCESS_TOKEN"


def test_an_account_without_a_role_is_refused_and_an_unknown_one_missing(served: Served) -> None:
    served.sandbox.add_account("7700", currency="EUR", campaigns=1)
    assert served.get("/rest/adAccounts/7700").status_code == 403
    assert served.get("/rest/adAccounts/9999").status_code == 404
    served.sandbox.add_member("member-2", refresh_token="AQX2", client_id=CLIENT, accounts=[])
    assert served.get(PATH, served.refresh("AQX2").json()["access_token"]).status_code == 403


def test_daily_limits_turn_at_midnight_utc_and_send_no_retry_after(served: Served) -> None:
    token = served.token()
    served.sandbox.exhaust_daily("APPLICATION", CLIENT, endpoint="adAccounts")
    refused = served.get(PATH, token)
    assert refused.status_code == 429 and "retry-after" not in refused.headers
    assert refused.json() == {
        "status": 429,
        "serviceErrorCode": 101,
        "code": "TOO_MANY_REQUESTS",
        "message": "Resource level throttle APPLICATION DAY limit for calls to this resource"
        " is reached.",
    }
    assert served.get(f"{PATH}/adCampaigns?q=search", token).status_code == 200  # per endpoint
    served.sandbox.clock.advance_to(datetime(2026, 11, 21, tzinfo=UTC))
    assert served.get(PATH, token).status_code == 200
    served.sandbox.exhaust_daily("MEMBER", CLIENT, member=MEMBER, endpoint="adAccounts")
    assert "MEMBER DAY limit" in served.get(PATH, token).json()["message"]
