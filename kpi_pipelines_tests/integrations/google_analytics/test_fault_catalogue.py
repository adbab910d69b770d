"""GA4's fault catalogue: every fault, struck in the middle of a window, loses nothing.

A sync reads 12 days in 4-day windows, each report paged 16 rows at a time and written in
batches of 50 points, so a window spans several pages and several batches. Each fault strikes
on the second page of window 2's channel report. A twin workspace on the same property, synced
calmly first, is the reference; it is itself checked against the sandbox's own truth.

GA4 commits per window (a report's window and its cursor): a failed run may leave window 1
behind, never part of window 2.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from kpi_pipelines.sandbox.google import Fault, GA4Property
from kpi_pipelines.sandbox.google.ga4 import QUOTA_MESSAGES
from kpi_pipelines_tests.canary import leaks
from kpi_pipelines_tests.integrations.google_analytics.conftest import GA4World
from kpi_pipelines_tests.integrations.google_analytics.test_adapter import (
    assert_matches,
    stored_points,
    truth,
)
from kpi_pipelines_tests.integrations.google_faults import (
    FATAL,
    RECOVERABLE,
    RETRY_BUDGET,
    FaultCase,
    Rows,
    assert_clear_failure,
    assert_identical,
    assert_rode_out,
    catalogue,
    connection_of,
    recover,
    tenant_rows,
)
from kpi_pipelines_tests.run_results import failure_message, metadata

PROPERTY = "3001"
HISTORY_DAYS = 12
WINDOW_DAYS = 4
PAGE_SIZE = 16
SYNC = {"history_days": HISTORY_DAYS}
ADAPTER: dict[str, Any] = {
    "window_days": WINDOW_DAYS,
    "page_size": PAGE_SIZE,
    "batch_size": 50,
    "max_attempts": RETRY_BUDGET,
}


def pages(rows: int) -> int:
    return max(1, -(-rows // PAGE_SIZE))


def calm_twin(ga4: GA4World) -> tuple[GA4Property, int]:
    """The property, a calm workspace synced from it (checked against the sandbox's truth),
    and how many API calls a sync makes before window 2's second channel page."""
    prop = ga4.property(PROPERTY, history_days=30)
    ga4.workspace("calm", PROPERTY)
    result = ga4.sync("calm", SYNC, **ADAPTER)
    assert result.success, failure_message(result)
    today = prop.today()
    start = today - timedelta(days=HISTORY_DAYS - 1)
    assert_matches(stored_points(ga4, "calm"), truth(ga4, PROPERTY, start, today))

    window_1 = ga4.sandbox.truth_by_date_channel(PROPERTY, start, window_1_end(prop))
    window_2 = ga4.sandbox.truth_by_date_channel(
        PROPERTY,
        window_1_end(prop) + timedelta(days=1),
        window_1_end(prop) + timedelta(days=WINDOW_DAYS),
    )
    assert len(window_2) > PAGE_SIZE  # so that the fault strikes inside a window
    # The probe, window 1's channel pages and its one total page, window 2's first page.
    after = 1 + pages(len(window_1)) + 1 + 1
    ga4.workspace("faulted", PROPERTY)
    return prop, after


def window_1_end(prop: GA4Property) -> date:
    return prop.today() - timedelta(days=HISTORY_DAYS - WINDOW_DAYS)


def through(rows: Rows, day: date) -> Rows:
    """The calm rows of both reports' windows up to `day` (their kpi points and audit rows),
    with the cursors a sync stopped there leaves."""

    def kept(row: dict[str, Any]) -> bool:
        return row["timestamp"].date() <= day

    return {
        "kpi_data": [r for r in rows["kpi_data"] if kept(r)],
        "raw_records": rows["raw_records"],
        "sync_state": [
            {**r, "cursor": {**r["cursor"], "synced_through": day.isoformat()}}
            for r in rows["sync_state"]
        ],
        "audit_log": [r for r in rows["audit_log"] if kept(r)],
        "manual_overrides": rows["manual_overrides"],
    }


@catalogue(RECOVERABLE)
def test_a_fault_the_sync_rides_out_leaves_the_tables_of_a_calm_sync(
    ga4: GA4World, case: FaultCase
) -> None:
    _, after = calm_twin(ga4)
    calm = tenant_rows(ga4.warehouse, "calm")
    issued = ga4.sandbox.oauth.issued_count()
    case.script(ga4.sandbox, "ga4", after)

    result = ga4.sync("faulted", SYNC, **ADAPTER, **case.adapter)

    assert_rode_out(ga4, case, result, calm=calm, issued=issued)
    assert metadata(result)["success"] is True


@catalogue(FATAL)
def test_a_fault_that_fails_the_sync_keeps_whole_windows_and_a_calm_rerun_completes(
    ga4: GA4World, case: FaultCase
) -> None:
    prop, after = calm_twin(ga4)
    calm = tenant_rows(ga4.warehouse, "calm")
    case.script(ga4.sandbox, "ga4", after)

    result = ga4.sync("faulted", SYNC, **ADAPTER, **case.adapter)

    message = assert_clear_failure(result, case.fails_with or "")
    # Window 1 of both reports was committed with its cursors; nothing of window 2 was.
    assert_identical(tenant_rows(ga4.warehouse, "faulted"), through(calm, window_1_end(prop)))
    assert tenant_rows(ga4.warehouse, "calm") == calm
    connection = connection_of(ga4, "faulted")
    assert connection.consecutive_failures == 1 and connection.last_error == message

    recover(ga4, case, "faulted")
    rerun = ga4.sync("faulted", SYNC, **ADAPTER)
    assert rerun.success, failure_message(rerun)
    assert_identical(tenant_rows(ga4.warehouse, "faulted"), calm)


def test_an_hourly_quota_spent_mid_sync_stops_cleanly_at_a_whole_window(ga4: GA4World) -> None:
    """Not a failed run (the adapter's decision): what was read stays, the next sync resumes."""
    prop, after = calm_twin(ga4)
    calm = tenant_rows(ga4.warehouse, "calm")
    hourly = QUOTA_MESSAGES["hourly"]
    ga4.sandbox.add_fault(Fault("quota", api="ga4", message=hourly, after=after))

    result = ga4.sync("faulted", SYNC, **ADAPTER)

    assert result.success, failure_message(result)
    md = metadata(result)
    assert md["success"] is False
    [error] = md["errors"]
    assert hourly in error and "the next sync resumes from there" in error
    assert leaks([("errors", error)]) == []
    assert_identical(tenant_rows(ga4.warehouse, "faulted"), through(calm, window_1_end(prop)))

    # The next hour, with the quota back (the clock stays put: the same sandbox state).
    rerun = ga4.sync("faulted", SYNC, **ADAPTER)
    assert rerun.success and metadata(rerun)["success"] is True
    assert_identical(tenant_rows(ga4.warehouse, "faulted"), calm)
