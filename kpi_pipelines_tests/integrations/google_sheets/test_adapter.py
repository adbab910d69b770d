"""Google Sheets through the real pipeline: sandbox over HTTP -> OAuth -> values.get -> kpi_data."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from kpi_pipelines.integrations.google_sheets import adapter as sheets_adapter
from kpi_pipelines.sandbox.google import (
    DEMO_REFRESH_TOKEN,
    DateTime,
    ErrorValue,
    Formula,
    Number,
    Text,
    currency,
    percent,
)
from kpi_pipelines.warehouse.control import list_connections
from kpi_pipelines.warehouse.tenant_data import read_points
from kpi_pipelines_tests.conftest import table_snapshot
from kpi_pipelines_tests.integrations.google_sheets.conftest import MAPPING, SheetsWorld
from kpi_pipelines_tests.run_results import failure_message, metadata

SHEET_ID = "1TestSheet00000000000000000000000000000000"
HEADER = ["Date", "Metric", "Value", "Channel"]

# (sheet row as typed cells, the point it must become: day, metric, value, channel)
ROWS = [
    (
        [DateTime(date(2024, 1, 5)), "signups", Number(1234, "#,##0"), "ads"],
        (date(2024, 1, 5), "signups", 1234.0, "ads"),
    ),
    (  # no channel: the API drops the trailing empty cell (a ragged row)
        [DateTime(date(2024, 1, 5)), "ad_budget", currency(1234.5)],
        (date(2024, 1, 5), "ad_budget", 1234.5, None),
    ),
    (  # a percent is stored as its fraction either way
        [DateTime(date(2024, 1, 6)), "trial_conversion_rate", percent(0.125)],
        (date(2024, 1, 6), "trial_conversion_rate", 0.125, None),
    ),
    (  # a formula's value
        [DateTime(date(2024, 1, 6)), "signups", Formula("=C2*2", Number(2468)), "ads"],
        (date(2024, 1, 6), "signups", 2468.0, "ads"),
    ),
    (  # a date with a time of day: the day
        [DateTime(datetime(2024, 1, 7, 18, 30)), "refunds", currency(-20), "web"],
        (date(2024, 1, 7), "refunds", -20.0, "web"),
    ),
]


def stored(world: SheetsWorld, workspace_id: str) -> set[tuple[date, str, float, str | None]]:
    return {
        (p.timestamp.date(), p.metric, p.value, p.dimensions.get("Channel"))
        for p in read_points(world.warehouse, workspace_id, source="google_sheets")
    }


def add_sheet(world: SheetsWorld, title: str, rows: list[list], sheet_id: str = SHEET_ID) -> None:
    world.sandbox.add_spreadsheet(sheet_id, {title: rows, "Other": [["x"]]})


def test_unformatted_and_formatted_reads_store_the_same_points(sheets) -> None:
    rows = [HEADER, *(cells for cells, _ in ROWS[:2]), [], *(cells for cells, _ in ROWS[2:])]
    add_sheet(sheets, "KPIs", rows)
    sheets.workspace("ws-a", SHEET_ID, "KPIs!A1:D")
    sheets.workspace(
        "ws-b",
        SHEET_ID,
        "KPIs!A1:D",
        value_render_option="FORMATTED_VALUE",
        mapping={
            "date_column": "Date",
            "metric_column": "Metric",
            "value_column": "Value",
            "dimension_columns": ["Channel"],
            "date_formats": ["%m/%d/%Y", "%m/%d/%Y %H:%M:%S"],
            "thousands_separator": ",",
            "currency_symbols": "$",
        },
    )
    expected = {point for _, point in ROWS}
    for workspace in ("ws-a", "ws-b"):
        result = sheets.sync(workspace)
        assert result.success, failure_message(result)
        assert stored(sheets, workspace) == expected
        md = metadata(result)
        assert md["records_processed"] == len(ROWS) and md["points_written"] == len(ROWS)
    [point] = [p for p in read_points(sheets.warehouse, "ws-a") if p.metric == "ad_budget"]
    assert point.timestamp == datetime(2024, 1, 5, tzinfo=UTC)
    assert point.metadata == {
        "granularity": "day",
        "spreadsheet_id": SHEET_ID,
        "range": "KPIs!A1:D",
    }
    with sheets.warehouse.control() as db:
        [connection] = list_connections(db, provider="google_sheets", workspace_id="ws-a")
    assert connection.last_success_at is not None and connection.consecutive_failures == 0


def test_serial_number_dates(sheets) -> None:
    # Dates typed as serial numbers (what UNFORMATTED_VALUE sends for date cells), and a
    # date typed as text, side by side.
    add_sheet(
        sheets,
        "KPIs",
        [
            HEADER,
            [45296, "signups", 3],
            [Number(45297.75), "signups", 4],
            [Text("2024-01-08"), "signups", 5],
        ],
    )
    sheets.workspace("ws-a", SHEET_ID, "KPIs")
    result = sheets.sync("ws-a")
    assert result.success, failure_message(result)
    assert stored(sheets, "ws-a") == {
        (date(2024, 1, 5), "signups", 3.0, None),
        (date(2024, 1, 6), "signups", 4.0, None),
        (date(2024, 1, 8), "signups", 5.0, None),
    }


def test_a_quoted_sheet_name_with_punctuation_is_encoded_in_the_path(sheets) -> None:
    title = "Q1 '24 / Revenue #1? 50%"
    add_sheet(sheets, title, [HEADER, *(cells for cells, _ in ROWS)])
    quoted = "'" + title.replace("'", "''") + "'"
    sheets.workspace("ws-a", SHEET_ID, f"{quoted}!A1:D100")
    result = sheets.sync("ws-a")
    assert result.success, failure_message(result)
    assert stored(sheets, "ws-a") == {point for _, point in ROWS}


def test_a_bad_row_rejects_the_whole_sheet_by_sheet_row_numbers(sheets) -> None:
    good = [
        ["Marketing KPIs"],  # a title above the table, outside the range
        [],
        HEADER,  # row 3
        [DateTime(date(2024, 1, 5)), "signups", 10, "ads"],
        [DateTime(date(2024, 1, 6)), "signups", 11, "ads"],
        [DateTime(date(2024, 1, 7)), "signups", 12, "ads"],
    ]
    add_sheet(sheets, "KPIs", good)
    sheets.workspace("ws-a", SHEET_ID, "'KPIs'!A3:D")
    assert sheets.sync("ws-a").success
    before = table_snapshot(sheets.warehouse)

    bad = [
        *good[:4],
        [DateTime(date(2024, 1, 6)), "signups", 99, "ads"],  # row 5: valid, a changed value
        [Text("yesterday"), "signups", 12, "ads"],  # row 6
        [DateTime(date(2024, 1, 8)), "signups", ErrorValue("#DIV/0!"), "ads"],  # row 7
        [DateTime(date(2024, 1, 9)), "Sign Ups", 4],  # row 8
    ]
    add_sheet(sheets, "KPIs", bad)
    result = sheets.sync("ws-a")
    assert not result.success
    message = failure_message(result)
    assert "sheet range KPIs!A3:D1000 of spreadsheet" in message
    assert "was rejected and nothing was imported: 3 invalid rows" in message
    assert "line 6, column 'Date': 'yesterday' is not a date" in message
    assert "line 7, column 'Value': '#DIV/0!' is not a number" in message
    assert "line 8, column 'Metric': 'Sign Ups' is not a metric key" in message
    after = table_snapshot(sheets.warehouse)
    assert after["kpi_data"] == before["kpi_data"] and after["audit_log"] == before["audit_log"]


def test_an_empty_range_has_its_own_error(sheets) -> None:
    add_sheet(sheets, "KPIs", [HEADER, [DateTime(date(2024, 1, 5)), "signups", 1]])
    sheets.workspace("ws-a", SHEET_ID, "KPIs!F1:H20")
    result = sheets.sync("ws-a")
    assert not result.success
    message = failure_message(result)
    assert "sheet range KPIs!F1:H20 of spreadsheet" in message
    assert "is empty: the Sheets API returned no values" in message


def test_unknown_spreadsheet_and_bad_range_say_what_to_fix(sheets) -> None:
    add_sheet(sheets, "KPIs", [HEADER])
    sheets.workspace("ws-a", "1NoSuchSheet000000000000000000000", "KPIs")
    assert "was not found: check the spreadsheet_id and that the sheet is shared" in (
        failure_message(sheets.sync("ws-a"))
    )
    sheets.workspace("ws-b", SHEET_ID, "No Such Tab!A1:D")
    message = failure_message(sheets.sync("ws-b"))
    assert "Unable to parse range: No Such Tab!A1:D" in message
    assert "quote it" in message


def test_per_minute_quota_is_waited_out(sheets, monkeypatch) -> None:
    add_sheet(sheets, "KPIs", [HEADER, *(cells for cells, _ in ROWS)])
    sheets.workspace("ws-a", SHEET_ID, "KPIs")
    sheets.sandbox.sheets.read_requests_per_minute_per_user = 1
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # the sandbox's quota window runs on its clock
        waits.append(seconds)
        sheets.sandbox.advance(seconds=seconds)

    monkeypatch.setattr(sheets_adapter, "_sleep", sleep)
    assert sheets.sync("ws-a").success
    assert waits == []
    result = sheets.sync("ws-a")  # within the same minute: 429 RESOURCE_EXHAUSTED
    assert result.success, failure_message(result)
    assert waits and sum(waits) >= 60 - 1
    assert all(2 <= wait <= 64 for wait in waits)
    assert waits == sorted(waits)  # exponential


def test_workspaces_are_isolated(sheets) -> None:
    add_sheet(sheets, "KPIs", [HEADER, [DateTime(date(2024, 1, 5)), "signups", 1, "ads"]])
    other = "1OtherSheet0000000000000000000000000000000"
    add_sheet(sheets, "KPIs", [HEADER, [DateTime(date(2024, 1, 5)), "signups", 2]], other)
    sheets.workspace("ws-a", SHEET_ID, "KPIs")
    sheets.workspace("ws-b", other, "KPIs")
    assert sheets.sync("ws-a").success
    assert stored(sheets, "ws-b") == set()
    assert sheets.sync("ws-b").success
    assert stored(sheets, "ws-a") == {(date(2024, 1, 5), "signups", 1.0, "ads")}
    assert stored(sheets, "ws-b") == {(date(2024, 1, 5), "signups", 2.0, None)}


@pytest.mark.parametrize(
    ("setting", "value", "problem"),
    [
        ("spreadsheet_id", "not an id", "is not a spreadsheet id"),
        ("range", "  ", "range must name the cells"),
    ],
)
def test_unusable_settings_say_what_to_fix(sheets, setting, value, problem) -> None:
    settings = {"spreadsheet_id": SHEET_ID, "range": "KPIs", setting: value}
    spreadsheet_id, range_ = settings.pop("spreadsheet_id"), settings.pop("range")
    sheets.workspace("ws-a", spreadsheet_id, range_)
    message = failure_message(sheets.sync("ws-a"))
    assert (
        "the google_sheets connection 'default' of workspace 'ws-a' has unusable settings"
        in message
    )
    assert problem in message


def test_a_pasted_sheet_address_is_accepted() -> None:
    from kpi_pipelines.integrations.google_sheets.types import SheetsConnectionSettings

    settings = SheetsConnectionSettings(
        spreadsheet_id=f"https://docs.google.com/spreadsheets/d/{SHEET_ID}/edit#gid=0",
        range="KPIs",
        mapping={"date_column": "Date", "metric": "signups", "value_column": "Value"},
    )
    assert settings.spreadsheet_id == SHEET_ID


def test_a_sheet_with_many_bad_rows_fails_with_a_bounded_message_and_a_report(
    sheets, kpi_home
) -> None:
    rows = [[Text(f"day {i}"), "signups", i, "ads"] for i in range(500)]
    add_sheet(sheets, "KPIs", [HEADER, *rows])
    sheets.workspace("ws-a", SHEET_ID, "KPIs")
    result = sheets.sync("ws-a")
    assert not result.success
    message = failure_message(result)
    [report] = (kpi_home / "rejections" / "ws-a").glob(f"{result.run_id}-*.errors.txt")
    assert report.name == f"{result.run_id}-{SHEET_ID}-KPIs.errors.txt"
    assert len(message.encode()) < 8 * 1024
    assert "was rejected and nothing was imported: 500 invalid rows\n" in message
    assert message.endswith(f"... and 480 more; every error is listed in {report}")
    listed = [line for line in report.read_text().splitlines() if line.startswith("line ")]
    assert [int(line.split(",")[0].removeprefix("line ")) for line in listed] == list(range(2, 502))
    assert stored(sheets, "ws-a") == set()


def test_a_sheet_echoing_a_secret_is_refused_whole_without_showing_it(sheets) -> None:
    """The API answers with the connection's refresh token in a cell (echoed back, or
    pasted there): the sheet is refused naming the line, nothing of it is imported, and the
    canary finds the token in no table, event log or message."""
    rows = [HEADER, [DateTime(date(2024, 1, 5)), "signups", 10, "ads"]]
    add_sheet(sheets, "KPIs", rows)
    sheets.workspace("ws-a", SHEET_ID, "'KPIs'!A1:D")
    assert sheets.sync("ws-a").success
    before = table_snapshot(sheets.warehouse)
    add_sheet(
        sheets,
        "KPIs",
        [*rows, [DateTime(date(2024, 1, 6)), "signups", 11, f"via {DEMO_REFRESH_TOKEN}"]],
    )
    result = sheets.sync("ws-a")
    assert not result.success
    message = failure_message(result)
    assert "line 3: it holds a secret this deployment uses" in message, message
    assert "nothing of it was imported" in message
    after = table_snapshot(sheets.warehouse)
    assert after["kpi_data"] == before["kpi_data"] and after["audit_log"] == before["audit_log"]


def test_a_sheet_imported_on_the_grant_connect_stored(sheets) -> None:
    add_sheet(sheets, "KPIs", [HEADER, *(row for row, _ in ROWS)])
    connected = sheets.connect_with_consent(
        "ws-c", {"spreadsheet_id": SHEET_ID, "range": "KPIs", "mapping": MAPPING}
    )
    assert connected.scope == "https://www.googleapis.com/auth/spreadsheets.readonly"
    result = sheets.sync("ws-c")
    assert result.success, failure_message(result)
    assert stored(sheets, "ws-c") == {point for _, point in ROWS}
    # the consent's code, then the API on the grant's own access token: no refresh at all
    assert [r.grant_type for r in sheets.sandbox.oauth.requests] == ["authorization_code"]
