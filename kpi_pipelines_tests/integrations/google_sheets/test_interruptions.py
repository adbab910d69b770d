"""A sheet import is one transaction: killed (SIGKILL) or cut off by a PostgreSQL restart
while it writes, it leaves nothing, and the rerun stores exactly what a calm import does."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from kpi_pipelines.sandbox.google import DateTime, Number
from kpi_pipelines_tests.interruptions import (
    kill_sync_midway,
    restart_postgres_during,
    tenant_rows,
    writing,
)
from kpi_pipelines_tests.run_results import failure_message

SHEET_ID = "1InterruptedSheet000000"
RANGE = "KPIs!A1:D"


@pytest.fixture
def calm(sheets):
    """A sheet big enough that its import's transaction stays open a while, imported once
    without trouble: what every interrupted import must end as."""
    start = date(2020, 1, 1)
    rows: list[list] = [["Date", "Metric", "Channel", "Value"]]
    rows += [
        [DateTime(start + timedelta(days=n // 10)), f"metric_{n % 10}", "web", Number(n)]
        for n in range(8_000)
    ]
    sheets.sandbox.add_spreadsheet(SHEET_ID, {"KPIs": rows})
    sheets.workspace("calm", SHEET_ID, RANGE)
    result = sheets.sync("calm")
    assert result.success, failure_message(result)
    return tenant_rows(sheets.warehouse, "calm")


def test_an_import_killed_while_it_writes_leaves_nothing(sheets, calm) -> None:
    sheets.workspace("killed", SHEET_ID, RANGE)
    killed = kill_sync_midway("google_sheets", "killed", when=lambda: writing(sheets.warehouse))
    assert killed, "the import finished before it could be killed"
    assert tenant_rows(sheets.warehouse, "killed") == {"kpi_data": [], "raw_records": []}
    rerun = sheets.sync("killed")
    assert rerun.success, failure_message(rerun)
    assert tenant_rows(sheets.warehouse, "killed") == calm


@pytest.mark.usefixtures("kpi_home")
def test_a_postgres_restart_while_it_writes_leaves_nothing(sheets, calm) -> None:
    sheets.workspace("restarted", SHEET_ID, RANGE)
    first = restart_postgres_during(
        lambda: sheets.sync("restarted"), when=lambda: writing(sheets.warehouse)
    )
    assert not first.success
    assert "lost the warehouse database mid-sync" in failure_message(first)
    assert tenant_rows(sheets.warehouse, "restarted") == {"kpi_data": [], "raw_records": []}
    rerun = sheets.sync("restarted")
    assert rerun.success, failure_message(rerun)
    assert tenant_rows(sheets.warehouse, "restarted") == calm
