"""Sheets v4 values.get / values.batchGet: renderings from typed cells, A1 ranges, ragged rows,
errors and the per-minute read quota."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import httpx
import pytest
from googleapiclient.errors import HttpError

from kpi_pipelines.sandbox.google import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_REFRESH_TOKEN,
    DateTime,
    ErrorValue,
    Formula,
    GoogleSandbox,
    Number,
    Sheet,
    Text,
    currency,
    percent,
)
from kpi_pipelines.sandbox.google.sheets import format_datetime, format_number
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines_tests.sandbox.google.conftest import serve, sheets_client, small_demo
from kpi_pipelines_tests.sandbox.google.discovery import assert_conforms

SHEET_ID = "1TestSheet"
ALL = "'Sheet 1'!A1:F7"


def _sandbox() -> GoogleSandbox:
    sandbox = small_demo()
    sandbox.add_spreadsheet(
        SHEET_ID,
        [
            Sheet(
                "Sheet 1",
                [
                    ["Date", "Channel", "Revenue", "Rate", "Count", "Note"],
                    [
                        DateTime(date(2024, 1, 5)),
                        "Email",
                        currency(1234.5),
                        percent(0.125),
                        42,
                        "ok",
                    ],
                    [
                        DateTime(date(2024, 1, 6), "yyyy-mm-dd"),
                        "Direct",
                        currency(-17),
                        percent(0.5, 0),
                        Formula("=E2*2", 84),
                        None,
                    ],
                    [],
                    [
                        None,
                        None,
                        Number(1234567.891, "#,##0.00"),
                        None,
                        Formula("=SUM(E2:E3)", 126),
                    ],
                    [DateTime(datetime(2024, 1, 5, 13, 45, 30))],
                    [True, ErrorValue("#DIV/0!"), Text("00123")],
                ],
            ),
            Sheet("Bob's data", [["a", "b"], ["1", "2"]], row_count=10, column_count=5),
            Sheet("Empty"),
        ],
        title="Test sheet",
        named_ranges={"Revenue": "'Sheet 1'!C2:C3"},
    )
    return sandbox


@pytest.fixture(scope="module")
def shared() -> Iterator[LoopbackServer]:
    """One server for the tests that only read (a quota high enough for all of them)."""
    sandbox = _sandbox()
    sandbox.sheets.read_requests_per_minute_per_user = 10_000
    with serve(sandbox) as running:
        yield running


@pytest.fixture
def sandbox() -> GoogleSandbox:
    return _sandbox()


@pytest.fixture
def server(sandbox: GoogleSandbox) -> Iterator[LoopbackServer]:
    with serve(sandbox) as running:
        yield running


@pytest.fixture
def client(shared: LoopbackServer) -> Any:
    return sheets_client(shared).spreadsheets().values()


def _get(client: Any, range_: str, **params: str) -> dict[str, Any]:
    response = client.get(spreadsheetId=SHEET_ID, range=range_, **params).execute()
    assert_conforms("sheets.v4", "ValueRange", response)
    return response


def test_formatted_values_are_what_the_sheet_shows(client: Any) -> None:
    response = _get(client, ALL)
    assert response["range"] == ALL
    assert response["majorDimension"] == "ROWS"
    assert response["values"] == [
        ["Date", "Channel", "Revenue", "Rate", "Count", "Note"],
        ["1/5/2024", "Email", "$1,234.50", "12.50%", "42", "ok"],
        ["2024-01-06", "Direct", "-$17.00", "50%", "84"],  # trailing empty cell dropped
        [],  # an empty row inside the range
        ["", "", "1,234,567.89", "", "126"],  # empty cells before data are ""
        ["1/5/2024 13:45:30"],
        ["TRUE", "#DIV/0!", "00123"],
    ]


def test_unformatted_values_and_serial_dates(client: Any) -> None:
    values = _get(client, ALL, valueRenderOption="UNFORMATTED_VALUE")["values"]
    assert values[1] == [45296, "Email", 1234.5, 0.125, 42, "ok"]  # 2024-01-05 is day 45296
    assert values[2] == [45297, "Direct", -17, 0.5, 84]
    assert values[4] == ["", "", 1234567.891, "", 126]
    assert values[5][0] == pytest.approx(45296 + (13 * 3600 + 45 * 60 + 30) / 86400)
    assert values[6] == [True, "#DIV/0!", "00123"]
    strings = _get(
        client, ALL, valueRenderOption="UNFORMATTED_VALUE", dateTimeRenderOption="FORMATTED_STRING"
    )["values"]
    assert strings[1] == ["1/5/2024", "Email", 1234.5, 0.125, 42, "ok"]
    assert strings[5] == ["1/5/2024 13:45:30"]
    # dateTimeRenderOption is ignored for FORMATTED_VALUE.
    formatted = _get(client, "'Sheet 1'!A2", dateTimeRenderOption="SERIAL_NUMBER")
    assert formatted == {
        "range": "'Sheet 1'!A2",
        "majorDimension": "ROWS",
        "values": [["1/5/2024"]],
    }


def test_formula_rendering(client: Any) -> None:
    values = _get(client, "'Sheet 1'!E2:E5", valueRenderOption="FORMULA")["values"]
    assert values == [[42], ["=E2*2"], [], ["=SUM(E2:E3)"]]
    dates = _get(client, "'Sheet 1'!A2:A3", valueRenderOption="FORMULA")["values"]
    assert dates == [[45296], [45297]]


def test_columns_major_dimension(client: Any) -> None:
    response = _get(client, "'Sheet 1'!A1:C3", majorDimension="COLUMNS")
    assert response["majorDimension"] == "COLUMNS"
    assert response["values"] == [
        ["Date", "1/5/2024", "2024-01-06"],
        ["Channel", "Email", "Direct"],
        ["Revenue", "$1,234.50", "-$17.00"],
    ]
    ragged = _get(client, "'Sheet 1'!D1:F3", majorDimension="COLUMNS")["values"]
    assert ragged == [["Rate", "12.50%", "50%"], ["Count", "42", "84"], ["Note", "ok"]]


def test_a1_ranges_and_quoted_sheet_names(client: Any) -> None:
    whole = _get(client, "'Bob''s data'")
    assert whole["range"] == "'Bob''s data'!A1:E10"
    assert whole["values"] == [["a", "b"], ["1", "2"]]
    assert _get(client, "'Bob''s data'!B2")["values"] == [["2"]]
    assert _get(client, "Empty")["range"] == "Empty!A1:Z1000"
    first_sheet = _get(client, "A1:B2")
    assert first_sheet["range"] == "'Sheet 1'!A1:B2"
    assert _get(client, "'Sheet 1'!B2:A1")["range"] == "'Sheet 1'!A1:B2"  # reversed corners
    assert _get(client, "'Sheet 1'!B:C")["range"] == "'Sheet 1'!B1:C1000"
    assert _get(client, "'Sheet 1'!2:3")["range"] == "'Sheet 1'!A2:Z3"
    assert _get(client, "'Sheet 1'!E4:E")["values"] == [[], ["126"]]
    named = _get(client, "Revenue")
    assert named == {
        "range": "'Sheet 1'!C2:C3",
        "majorDimension": "ROWS",
        "values": [["$1,234.50"], ["-$17.00"]],
    }


def test_empty_ranges_have_no_values(client: Any) -> None:
    assert _get(client, "Empty!A1:C3") == {"range": "Empty!A1:C3", "majorDimension": "ROWS"}
    assert "values" not in _get(client, "'Sheet 1'!H1:J20")
    assert "values" not in _get(client, "'Sheet 1'!A4:F4")


def test_batch_get(client: Any) -> None:
    response = client.batchGet(
        spreadsheetId=SHEET_ID,
        ranges=["'Sheet 1'!A1:B2", "Empty!A1:B2", "'Bob''s data'!A1:B1"],
        valueRenderOption="UNFORMATTED_VALUE",
    ).execute()
    assert_conforms("sheets.v4", "BatchGetValuesResponse", response)
    assert response == {
        "spreadsheetId": SHEET_ID,
        "valueRanges": [
            {
                "range": "'Sheet 1'!A1:B2",
                "majorDimension": "ROWS",
                "values": [["Date", "Channel"], [45296, "Email"]],
            },
            {"range": "Empty!A1:B2", "majorDimension": "ROWS"},
            {"range": "'Bob''s data'!A1:B1", "majorDimension": "ROWS", "values": [["a", "b"]]},
        ],
    }


@pytest.mark.parametrize(
    ("range_", "status", "message"),
    [
        ("Nope!A1:B2", 400, "Unable to parse range: Nope!A1:B2"),
        ("'Sheet 1'!A1:B0", 400, "Unable to parse range: 'Sheet 1'!A1:B0"),
        ("'Sheet 1!A1", 400, "Unable to parse range: 'Sheet 1!A1"),
        (
            "'Sheet 1'!A1:B2000",
            400,
            "Range ('Sheet 1'!A1:B2000) exceeds grid limits. Max rows: 1000, max columns: 26",
        ),
    ],
)
def test_bad_ranges(client: Any, range_: str, status: int, message: str) -> None:
    with pytest.raises(HttpError) as caught:
        client.get(spreadsheetId=SHEET_ID, range=range_).execute()
    assert caught.value.resp.status == status
    assert caught.value.reason == message


def test_unknown_spreadsheet_and_bad_options(shared: LoopbackServer, client: Any) -> None:
    server = shared
    with pytest.raises(HttpError) as caught:
        client.get(spreadsheetId="1Missing", range="A1").execute()
    assert caught.value.resp.status == 404
    assert caught.value.reason == "Requested entity was not found."
    token = httpx.post(
        server.url("/token"),
        data={
            "grant_type": "refresh_token",
            "client_id": DEMO_CLIENT_ID,
            "client_secret": DEMO_CLIENT_SECRET,
            "refresh_token": DEMO_REFRESH_TOKEN,
        },
    ).json()["access_token"]
    response = httpx.get(
        server.url(f"/v4/spreadsheets/{SHEET_ID}/values/A1"),
        params={"valueRenderOption": "RAW"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("Invalid value at 'value_render_option'")
    unauthenticated = httpx.get(server.url(f"/v4/spreadsheets/{SHEET_ID}/values/A1"))
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"]["status"] == "UNAUTHENTICATED"


def test_per_minute_read_quota(sandbox: GoogleSandbox, server: LoopbackServer) -> None:
    sandbox.sheets.read_requests_per_minute_per_user = 5
    client = sheets_client(server).spreadsheets().values()
    for _ in range(4):
        _get(client, "A1")
    client.batchGet(spreadsheetId=SHEET_ID, ranges=["A1", "B1"]).execute()  # one request
    with pytest.raises(HttpError) as caught:
        _get(client, "A1")
    assert caught.value.resp.status == 429
    error = caught.value.error_details
    assert caught.value.reason.startswith(
        "Quota exceeded for quota metric 'Read requests' and limit "
        "'Read requests per minute per user' of service 'sheets.googleapis.com'"
    )
    assert error[0]["reason"] == "RATE_LIMIT_EXCEEDED"
    assert error[0]["metadata"]["quota_limit_value"] == "5"
    sandbox.advance(seconds=61)  # the window slides on the sandbox clock
    assert _get(client, "A1")["values"] == [["Date"]]


def test_quota_error_body_is_googles(sandbox: GoogleSandbox, server: LoopbackServer) -> None:
    sandbox.sheets.read_requests_per_minute_per_user = 1
    creds_form = {
        "grant_type": "refresh_token",
        "client_id": DEMO_CLIENT_ID,
        "client_secret": DEMO_CLIENT_SECRET,
        "refresh_token": DEMO_REFRESH_TOKEN,
    }
    token = httpx.post(server.url("/token"), data=creds_form).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    url = server.url(f"/v4/spreadsheets/{SHEET_ID}/values/A1")
    assert httpx.get(url, headers=headers).status_code == 200
    refused = httpx.get(url, headers=headers)
    assert refused.status_code == 429
    body = refused.json()["error"]
    assert body["code"] == 429 and body["status"] == "RESOURCE_EXHAUSTED"
    assert body["details"][0]["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"


@pytest.mark.parametrize(
    ("value", "pattern", "shown"),
    [
        (1234.5, None, "1234.5"),
        (0.1 + 0.2, None, "0.3"),
        (1234.5, "$#,##0.00", "$1,234.50"),
        (-1234.5, "$#,##0.00", "-$1,234.50"),
        (2.675, "0.00", "2.68"),  # half away from zero, not banker's rounding
        (0.125, "0.00%", "12.50%"),
        (1234.5, "[$€]#,##0.00", "€1,234.50"),
        (1234.5, '#,##0 "units"', "1,235 units"),
        (0.5, "0.##", "0.5"),
        (1e16, None, "1E+16"),
    ],
)
def test_number_formats(value: float, pattern: str | None, shown: str) -> None:
    assert format_number(value, pattern) == shown


@pytest.mark.parametrize(
    ("pattern", "shown"),
    [
        ("M/d/yyyy", "3/7/2024"),
        ("yyyy-mm-dd", "2024-03-07"),
        ("d mmm yyyy", "7 Mar 2024"),
        ("dddd, mmmm d", "Thursday, March 7"),
        ("M/d/yyyy H:mm:ss", "3/7/2024 9:05:03"),
        ("h:mm AM/PM", "9:05 AM"),
    ],
)
def test_date_formats(pattern: str, shown: str) -> None:
    assert format_datetime(datetime(2024, 3, 7, 9, 5, 3), pattern) == shown
