"""GA4 syncs interrupted the hard way end as if nothing happened once rerun: the run's
process killed (SIGKILL) between windows, PostgreSQL restarted under it."""

from __future__ import annotations

import pytest

from kpi_pipelines.sandbox.google import Fault
from kpi_pipelines_tests.interruptions import (
    committed,
    kill_sync_midway,
    restart_postgres_during,
    tenant_rows,
)
from kpi_pipelines_tests.run_results import failure_message

PROPERTY = "2001"
# Every report request takes a while, so an interruption lands between windows.
SLOW_REPORTS = Fault(kind="delay", api="ga4", times=1000, delay=0.15)


@pytest.fixture
def calm(ga4):
    """A workspace synced once without trouble: what every interrupted one must end as."""
    ga4.property(PROPERTY, history_days=100, daily_sessions=60)
    ga4.workspace("calm", PROPERTY)
    assert ga4.sync("calm").success
    return tenant_rows(ga4.warehouse, "calm")


def test_a_sync_killed_between_windows_is_completed_by_the_next(ga4, calm) -> None:
    ga4.workspace("killed", PROPERTY)
    ga4.sandbox.add_fault(SLOW_REPORTS)
    killed = kill_sync_midway(
        "google_analytics", "killed", when=lambda: committed(ga4.warehouse, "killed") > 0
    )
    ga4.sandbox.faults.clear()
    assert killed, "the sync finished before it could be killed"
    partial = tenant_rows(ga4.warehouse, "killed")
    assert 0 < len(partial["kpi_data"]) < len(calm["kpi_data"])
    rerun = ga4.sync("killed")
    assert rerun.success, failure_message(rerun)
    assert tenant_rows(ga4.warehouse, "killed") == calm


@pytest.mark.usefixtures("kpi_home")
def test_a_postgres_restart_mid_sync_is_ridden_out_or_fails_clearly_and_the_rerun_completes(
    ga4, calm
) -> None:
    ga4.workspace("restarted", PROPERTY)
    ga4.sandbox.add_fault(SLOW_REPORTS)
    first = restart_postgres_during(
        lambda: ga4.sync("restarted"), when=lambda: committed(ga4.warehouse, "restarted") > 0
    )
    ga4.sandbox.faults.clear()
    # A restart between two window writes is ridden out (the pool reconnects); one during a
    # write fails the run clearly. Either way the rerun ends as a calm sync.
    if not first.success:
        assert "lost the warehouse database mid-sync" in failure_message(first)
    rerun = ga4.sync("restarted")
    assert rerun.success, failure_message(rerun)
    assert tenant_rows(ga4.warehouse, "restarted") == calm
