"""The combined app: scripted faults, determinism, and serving in its own process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import timedelta

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
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines_tests.sandbox.google.conftest import ga4_client, sheets_client, small_demo

REPORT = {
    "dateRanges": [{"startDate": "yesterday", "endDate": "yesterday"}],
    "dimensions": [{"name": "sessionDefaultChannelGroup"}],
    "metrics": [{"name": "sessions"}, {"name": "totalUsers"}],
}
TOKEN_FORM = {
    "grant_type": "refresh_token",
    "client_id": DEMO_CLIENT_ID,
    "client_secret": DEMO_CLIENT_SECRET,
    "refresh_token": DEMO_REFRESH_TOKEN,
}


def test_scripted_faults(server: LoopbackServer, sandbox: GoogleSandbox) -> None:
    properties = ga4_client(server).properties()
    values = sheets_client(server).spreadsheets().values()

    sandbox.add_fault(Fault("status", api="ga4", status=503, times=2))
    for _ in range(2):
        with pytest.raises(HttpError) as caught:
            properties.runReport(property=f"properties/{DEMO_PROPERTY_ID}", body=REPORT).execute()
        assert caught.value.resp.status == 503
        assert caught.value.reason == "The service is currently unavailable."
    properties.runReport(property=f"properties/{DEMO_PROPERTY_ID}", body=REPORT).execute()

    sandbox.add_fault(Fault("malformed", api="sheets"))
    with pytest.raises(HttpError) as caught:
        values.get(spreadsheetId=DEMO_SPREADSHEET_ID, range="KPIs!A1").execute()
    assert caught.value.resp.status == 502
    assert b"<title>Error 502" in caught.value.content

    sandbox.add_fault(Fault("truncate", api="sheets"))
    truncated = values.get(spreadsheetId=DEMO_SPREADSHEET_ID, range="KPIs!A1:D10").execute()
    # The official client hands back the undecodable text as it is.
    assert isinstance(truncated, str)
    with pytest.raises(json.JSONDecodeError):
        json.loads(truncated)

    sandbox.add_fault(Fault("delay", api="oauth", delay=0.5))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url("/token"), data=TOKEN_FORM, timeout=0.1)
    sandbox.add_fault(Fault("status", api="oauth", status=500))
    failed = httpx.post(server.url("/token"), data=TOKEN_FORM)
    assert failed.status_code == 500 and failed.json()["error"] == "internal_failure"
    assert sandbox.faults.pending == []
    assert httpx.post(server.url("/token"), data=TOKEN_FORM).status_code == 200


def test_same_seed_same_data() -> None:
    first, second, other = small_demo(), small_demo(), small_demo(seed=7)
    prop = first.ga4.property(DEMO_PROPERTY_ID)
    end = prop.today()
    start = end - timedelta(days=20)
    truth = first.truth_by_date_channel(DEMO_PROPERTY_ID, start, end)
    assert truth == second.truth_by_date_channel(DEMO_PROPERTY_ID, start, end)
    assert truth != other.truth_by_date_channel(DEMO_PROPERTY_ID, start, end)
    # Simulating in two steps (advance) gives the same sessions as simulating at once.
    first.advance(hours=30)
    later = small_demo()
    later.advance(hours=30)
    assert first.ga4.property(DEMO_PROPERTY_ID).sessions(start, end + timedelta(days=1)) == (
        later.ga4.property(DEMO_PROPERTY_ID).sessions(start, end + timedelta(days=1))
    )


def test_serve_in_its_own_process() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "kpi_pipelines.sandbox.google", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline().strip()
        assert first_line.startswith("listening on http://127.0.0.1:"), first_line
        base_url = first_line.removeprefix("listening on ")
        token = httpx.post(f"{base_url}/token", data=TOKEN_FORM, timeout=10)
        assert token.status_code == 200
        report = httpx.post(
            f"{base_url}/v1beta/properties/{DEMO_PROPERTY_ID}:runReport",
            json=REPORT,
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
            timeout=30,
        )
        assert report.status_code == 200
        assert report.json()["rowCount"] >= 5
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode is not None
