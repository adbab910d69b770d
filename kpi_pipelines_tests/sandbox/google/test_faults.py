"""Faults that strike mid-sync: after N requests, quota storms with Google's own bodies, bodies
cut short in transit, and access tokens that expire or are revoked after N API calls."""

from __future__ import annotations

import httpx
import pytest
from googleapiclient.errors import HttpError

from kpi_pipelines.sandbox.google import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_PROPERTY_ID,
    DEMO_REFRESH_TOKEN,
    DEMO_SPREADSHEET_ID,
    Fault,
    GoogleSandbox,
)
from kpi_pipelines.sandbox.google.ga4 import QUOTA_MESSAGES
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines_tests.sandbox.google.conftest import ga4_client, sheets_client

REPORT = {
    "dateRanges": [{"startDate": "yesterday", "endDate": "yesterday"}],
    "dimensions": [{"name": "sessionDefaultChannelGroup"}],
    "metrics": [{"name": "sessions"}],
}
VALUES = f"/v4/spreadsheets/{DEMO_SPREADSHEET_ID}/values/KPIs!A1:C3"
RUN_REPORT = f"/v1beta/properties/{DEMO_PROPERTY_ID}:runReport"


def access_token(server: LoopbackServer) -> str:
    form = {
        "grant_type": "refresh_token",
        "client_id": DEMO_CLIENT_ID,
        "client_secret": DEMO_CLIENT_SECRET,
        "refresh_token": DEMO_REFRESH_TOKEN,
    }
    return httpx.post(server.url("/token"), data=form).json()["access_token"]


def read_values(server: LoopbackServer, token: str) -> httpx.Response:
    return httpx.get(server.url(VALUES), headers={"Authorization": f"Bearer {token}"})


def test_a_fault_waits_for_its_after_requests(server: LoopbackServer, sandbox: GoogleSandbox):
    token = access_token(server)  # the token endpoint is another API: it does not count
    sandbox.add_fault(Fault("status", api="sheets", status=500, times=2, after=2))
    statuses = [read_values(server, token).status_code for _ in range(5)]
    assert statuses == [200, 200, 500, 500, 200]
    assert sandbox.faults.pending == []


def test_quota_faults_answer_with_each_apis_own_429(server: LoopbackServer, sandbox) -> None:
    properties = ga4_client(server).properties()
    sandbox.add_fault(Fault("quota", api="ga4"))
    sandbox.add_fault(Fault("quota", api="ga4", message=QUOTA_MESSAGES["hourly"]))
    for message in (QUOTA_MESSAGES["concurrent"], QUOTA_MESSAGES["hourly"]):
        with pytest.raises(HttpError) as caught:
            properties.runReport(property=f"properties/{DEMO_PROPERTY_ID}", body=REPORT).execute()
        assert caught.value.resp.status == 429
        assert caught.value.reason == message
        assert b'"status":"RESOURCE_EXHAUSTED"' in caught.value.content

    # The scripted Sheets 429 is the very body the real per-minute quota sends.
    token = access_token(server)
    sandbox.sheets.read_requests_per_minute_per_user = 1
    sandbox.add_fault(Fault("quota", api="sheets"))
    scripted = read_values(server, token)  # a scripted 429 does not use up the quota
    assert read_values(server, token).status_code == 200
    real = read_values(server, token)
    assert scripted.status_code == real.status_code == 429
    assert scripted.json() == real.json()
    assert real.json()["error"]["details"][0]["reason"] == "RATE_LIMIT_EXCEEDED"
    with pytest.raises(HttpError) as caught:  # and the official client reads it as such
        sheets_client(server).spreadsheets().values().get(
            spreadsheetId=DEMO_SPREADSHEET_ID, range="KPIs!A1"
        ).execute()
    assert caught.value.resp.status == 429

    with pytest.raises(ValueError, match="names its API"):
        sandbox.add_fault(Fault("quota", api="oauth"))


def test_a_body_cut_short_in_transit(server: LoopbackServer, sandbox: GoogleSandbox) -> None:
    token = access_token(server)
    sandbox.add_fault(Fault("cut", api="ga4"))
    headers = {"Authorization": f"Bearer {token}"}
    with pytest.raises(httpx.RemoteProtocolError, match="without sending complete message body"):
        httpx.post(server.url(RUN_REPORT), json=REPORT, headers=headers)
    whole = httpx.post(server.url(RUN_REPORT), json=REPORT, headers=headers)
    assert whole.status_code == 200 and "rows" in whole.json()


def test_access_tokens_expire_after_n_api_calls(server: LoopbackServer, sandbox) -> None:
    token = access_token(server)
    sandbox.expire_access_tokens_after(2)
    assert [read_values(server, token).status_code for _ in range(2)] == [200, 200]
    expired = read_values(server, token)
    assert expired.status_code == 401
    assert expired.json()["error"]["details"][0]["reason"] == "ACCESS_TOKEN_EXPIRED"
    assert read_values(server, access_token(server)).status_code == 200  # a fresh one works

    # The official client refreshes once on the 401 and carries on.
    values = sheets_client(server).spreadsheets().values()
    values.get(spreadsheetId=DEMO_SPREADSHEET_ID, range="KPIs!A1").execute()
    issued = sandbox.oauth.issued_count()
    sandbox.expire_access_tokens_after(0)
    values.get(spreadsheetId=DEMO_SPREADSHEET_ID, range="KPIs!A1").execute()
    assert sandbox.oauth.issued_count() == issued + 1


def test_a_grant_revoked_after_n_api_calls(server: LoopbackServer, sandbox) -> None:
    token = access_token(server)
    sandbox.revoke_after(DEMO_REFRESH_TOKEN, 1)
    assert read_values(server, token).status_code == 200
    assert read_values(server, token).status_code == 401
    form = {
        "grant_type": "refresh_token",
        "client_id": DEMO_CLIENT_ID,
        "client_secret": DEMO_CLIENT_SECRET,
        "refresh_token": DEMO_REFRESH_TOKEN,
    }
    refused = httpx.post(server.url("/token"), data=form)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    with pytest.raises(KeyError):
        sandbox.revoke_after("1//no-such-token", 0)
