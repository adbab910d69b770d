"""Stripe syncs interrupted the hard way end as if nothing happened once rerun: the run's
process killed (SIGKILL) between batches, PostgreSQL restarted under it."""

from __future__ import annotations

import pytest

from kpi_pipelines_tests.interruptions import (
    committed,
    kill_sync_midway,
    restart_postgres_during,
    tenant_rows,
)
from kpi_pipelines_tests.run_results import failure_message

SMALL_BATCHES = {"KPI_BATCH_SIZE": "40"}


@pytest.fixture
def calm(stripe_world):
    """A workspace synced once without trouble: what every interrupted one must end as."""
    stripe_world.workspace("calm")
    stripe_world.import_rates("USD")
    assert stripe_world.sync("calm").success
    return tenant_rows(stripe_world.warehouse, "calm")


def test_a_sync_killed_between_batches_is_completed_by_the_next(stripe_world, calm) -> None:
    world = stripe_world
    world.workspace("killed")
    world.sandbox.faults.slow(0.02)  # pages take a while: the kill lands mid-sync
    killed = kill_sync_midway(
        "stripe", "killed", env=SMALL_BATCHES, when=lambda: committed(world.warehouse, "killed") > 0
    )
    world.sandbox.faults.slow(0)
    assert killed, "the sync finished before it could be killed"
    partial = tenant_rows(world.warehouse, "killed")
    assert 0 < len(partial["raw_records"]) < len(calm["raw_records"])
    assert partial["kpi_data"] == []  # metrics come after landing: none half-written
    rerun = world.sync("killed")
    assert rerun.success, failure_message(rerun)
    assert tenant_rows(world.warehouse, "killed") == calm


@pytest.mark.usefixtures("kpi_home")
def test_a_postgres_restart_mid_sync_is_ridden_out_or_fails_clearly_and_the_rerun_completes(
    stripe_world, calm, monkeypatch
) -> None:
    world = stripe_world
    world.workspace("restarted")
    monkeypatch.setenv("KPI_BATCH_SIZE", "40")
    world.sandbox.faults.slow(0.02)
    first = restart_postgres_during(
        lambda: world.sync("restarted"), when=lambda: committed(world.warehouse, "restarted") > 0
    )
    world.sandbox.faults.slow(0)
    # A restart between two batch writes is ridden out (the pool reconnects); one during a
    # write fails the run clearly. Either way the rerun ends as a calm sync.
    if not first.success:
        message = failure_message(first)
        assert "lost the warehouse database mid-sync" in message and "can be retried" in message
    rerun = world.sync("restarted")
    assert rerun.success, failure_message(rerun)
    assert tenant_rows(world.warehouse, "restarted") == calm
