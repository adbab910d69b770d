"""`kpi-pipelines sheets import`: the real command, a Dagster run, the Google sandbox."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from kpi_pipelines.cli import app
from kpi_pipelines.warehouse.tenant_data import read_points

SHEET_ID = "1CliSheetId"


pytestmark = pytest.mark.usefixtures("restored_environment")


def test_sheets_import_runs_through_dagster(sheets) -> None:
    sheets.sandbox.add_spreadsheet(
        SHEET_ID,
        {
            "Q3 2026": [["Date", "Metric", "Channel", "Value"], ["2026-07-01", "leads", "ads", 12]],
            "Other": [["Date", "Metric", "Channel", "Value"], ["2026-07-01", "leads", "ads", 99]],
        },
    )
    sheets.workspace("acme", SHEET_ID, "Other!A1:D")
    result = CliRunner().invoke(
        app, ["import", "acme", "google_sheets", "--range", "'Q3 2026'!A1:D"]
    )
    assert result.exit_code == 0, result.output
    assert "1 records, 1 points written" in result.output
    assert [(p.metric, p.value) for p in read_points(sheets.warehouse, "acme")] == [("leads", 12.0)]


def test_a_failed_import_exits_non_zero_with_the_reason(sheets) -> None:
    sheets.sandbox.add_spreadsheet(
        SHEET_ID,
        {"KPIs": [["Date", "Metric", "Channel", "Value"], ["2026-07-01", "leads", "ads", "lots"]]},
    )
    sheets.workspace("acme", SHEET_ID, "KPIs!A1:D")
    result = CliRunner().invoke(app, ["import", "acme", "google_sheets"])
    assert result.exit_code == 1
    assert "line 2" in result.output or "row 2" in result.output
    assert read_points(sheets.warehouse, "acme") == []
