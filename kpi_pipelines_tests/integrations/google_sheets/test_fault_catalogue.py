"""Google Sheets' fault catalogue: an import is all-or-nothing, whatever goes wrong.

Two workspaces import the same sheet calmly; then the sheet changes (values restated, a row
added). The calm twin imports the new version: the reference, checked against the sheet as
this test defines it. The other imports it under each fault (struck on its first API call: a
Sheets import makes one). A fault the adapter rides out ends with the twin's tables; one that
fails the import leaves every table as it was, and the next calm import reaches the twin's.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import dagster as dg

from kpi_pipelines.integrations.google_sheets.adapter import GoogleSheetsAdapter
from kpi_pipelines.sandbox.google import DateTime, currency, percent
from kpi_pipelines_tests.conftest import table_snapshot
from kpi_pipelines_tests.integrations.google_faults import (
    FATAL,
    RECOVERABLE,
    RETRY_BUDGET,
    FaultCase,
    assert_clear_failure,
    assert_identical,
    assert_rode_out,
    catalogue,
    connection_of,
    recover,
    tenant_rows,
)
from kpi_pipelines_tests.integrations.google_sheets.conftest import SheetsWorld
from kpi_pipelines_tests.integrations.google_sheets.test_adapter import HEADER, stored
from kpi_pipelines_tests.run_results import failure_message

SHEET_ID = "1FaultCatalogueSheet000000000000000000000"
RANGE = "KPIs!A1:D"
V1 = [
    HEADER,
    [DateTime(date(2024, 3, 1)), "signups", 120, "ads"],
    [DateTime(date(2024, 3, 1)), "signups", 80, "organic"],
    [DateTime(date(2024, 3, 2)), "ad_budget", currency(1500.25)],
    [DateTime(date(2024, 3, 2)), "trial_conversion_rate", percent(0.125)],
]
V2 = [
    HEADER,
    [DateTime(date(2024, 3, 1)), "signups", 135, "ads"],  # restated
    [DateTime(date(2024, 3, 1)), "signups", 80, "organic"],
    [DateTime(date(2024, 3, 2)), "ad_budget", currency(1500.25)],
    [DateTime(date(2024, 3, 2)), "trial_conversion_rate", percent(0.15)],  # restated
    [DateTime(date(2024, 3, 3)), "signups", 90, "ads"],  # added
]
V2_POINTS = {
    (date(2024, 3, 1), "signups", 135.0, "ads"),
    (date(2024, 3, 1), "signups", 80.0, "organic"),
    (date(2024, 3, 2), "ad_budget", 1500.25, None),
    (date(2024, 3, 2), "trial_conversion_rate", 0.15, None),
    (date(2024, 3, 3), "signups", 90.0, "ads"),
}
# Small retry waits: Google's quota backoff (2, 4, 8 ... s) is capped at this.
ADAPTER: dict[str, Any] = {"max_attempts": RETRY_BUDGET, "backoff_max_seconds": 0.05}


def import_sheet(
    sheets: SheetsWorld, workspace_id: str, **adapter: Any
) -> dg.ExecuteInProcessResult:
    """SheetsWorld.sync with adapter settings (a timeout, the retry budget and waits)."""
    return sheets.run(workspace_id, adapter=GoogleSheetsAdapter(**adapter))


def calm_twin(sheets: SheetsWorld) -> None:
    """Both workspaces hold the calm import of V1; the sheet is now V2, and the calm twin
    holds its calm import."""
    sheets.sandbox.add_spreadsheet(SHEET_ID, {"KPIs": V1})
    for workspace_id in ("calm", "faulted"):
        sheets.workspace(workspace_id, SHEET_ID, RANGE)
        assert import_sheet(sheets, workspace_id).success
    sheets.sandbox.add_spreadsheet(SHEET_ID, {"KPIs": V2})
    result = import_sheet(sheets, "calm")
    assert result.success, failure_message(result)
    assert stored(sheets, "calm") == V2_POINTS


@catalogue(RECOVERABLE)
def test_a_fault_the_import_rides_out_leaves_the_tables_of_a_calm_import(
    sheets: SheetsWorld, case: FaultCase
) -> None:
    calm_twin(sheets)
    calm = tenant_rows(sheets.warehouse, "calm")
    issued = sheets.sandbox.oauth.issued_count()
    case.script(sheets.sandbox, "sheets", 0)

    result = import_sheet(sheets, "faulted", **ADAPTER, **case.adapter)

    assert_rode_out(sheets, case, result, calm=calm, issued=issued)


@catalogue(FATAL)
def test_a_fault_that_fails_the_import_changes_nothing_and_a_calm_rerun_completes(
    sheets: SheetsWorld, case: FaultCase
) -> None:
    calm_twin(sheets)
    calm = tenant_rows(sheets.warehouse, "calm")
    before = table_snapshot(sheets.warehouse)
    case.script(sheets.sandbox, "sheets", 0)

    result = import_sheet(sheets, "faulted", **ADAPTER, **case.adapter)

    message = assert_clear_failure(result, case.fails_with or "")
    # Every row of every table as it was, timestamps included; only the connection's health
    # records the failure.
    after = table_snapshot(sheets.warehouse)
    assert after.pop("connections") != before.pop("connections")
    assert after == before
    connection = connection_of(sheets, "faulted")
    assert connection.consecutive_failures == 1 and connection.last_error == message

    recover(sheets, case, "faulted")
    rerun = import_sheet(sheets, "faulted", **ADAPTER)
    assert rerun.success, failure_message(rerun)
    assert_identical(tenant_rows(sheets.warehouse, "faulted"), calm)
