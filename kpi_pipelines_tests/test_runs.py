"""The runs the CLI starts (kpi_pipelines/runs.py), in process on the session's embedded
server and the project's Dagster instance (its dagster.yaml: the run queue and its tag
concurrency limits). The processes' view, with Dagster's daemon and the UI, is
test_cli_runs.py's."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
    QueuedRunCoordinatorDaemon,
)
from dagster._daemon.types import DaemonHeartbeat
from typer.testing import CliRunner

from kpi_pipelines.automation.pools import CONNECTION_TAG
from kpi_pipelines.cli import app
from kpi_pipelines.dagster_instance import CODE_LOCATION, open_instance
from kpi_pipelines.runs import RunOutcome, run_mart, run_provider
from kpi_pipelines.warehouse.control import (
    Connection,
    Workspace,
    add_connection,
    list_workspaces,
)
from kpi_pipelines.warehouse.database import Warehouse
from kpi_pipelines_tests.canary import runs_scanned

MAPPING = {"mapping": {"date_column": "d", "metric": "orders", "value_column": "v"}}


@pytest.fixture
def instance(restored_environment, warehouse: Warehouse) -> Iterator[dg.DagsterInstance]:
    """The project's instance (what the CLI opens), its new runs scanned by the canary."""
    with open_instance() as instance, runs_scanned(instance):
        instance.wipe_daemon_heartbeats()  # no daemon serves this instance's queue
        yield instance
        instance.wipe_daemon_heartbeats()


@pytest.fixture
def orders(
    warehouse: Warehouse, workspace_a: Workspace, workspace_b: Workspace, tmp_path: Path
) -> Path:
    """A CSV file both workspaces' csv_upload connections import."""
    for workspace in (workspace_a, workspace_b):
        add_connection(
            warehouse,
            Connection(workspace_id=workspace.id, provider="csv_upload", settings=MAPPING),
        )
    path = tmp_path / "orders.csv"
    path.write_text("d,v\n2026-01-01,4\n2026-01-02,6\n", encoding="utf-8")
    return path


def test_cli_runs_are_their_jobs_runs_with_an_origin_the_ui_loads(
    warehouse: Warehouse, instance: dg.DagsterInstance, orders: Path
) -> None:
    synced = run_provider(warehouse, instance, "csv_upload", "ws-a", {"path": str(orders)})
    assert synced.success, synced.failure
    assert synced.metadata["points_written"] == 2
    mart = run_mart(instance, "ws-a")
    assert mart.success, mart.failure
    for outcome, job in ((synced, "csv_upload_job"), (mart, "kpi_mart_job")):
        run = instance.get_run_by_id(outcome.run_id)
        assert run is not None and run.job_name == job
        # what the UI's "Re-execute" looks the job up by
        origin = run.remote_job_origin
        assert origin is not None
        assert origin.repository_origin.code_location_origin.location_name == CODE_LOCATION
        assert origin.repository_origin.repository_name == "__repository__"
        assert origin.job_name == job
        assert run.job_code_origin is not None
        assert run.tags["dagster/partition"] == "ws-a"
    assert instance.get_run_by_id(synced.run_id).tags[CONNECTION_TAG] == "ws-a/csv_upload"
    assert CONNECTION_TAG not in instance.get_run_by_id(mart.run_id).tags


def test_a_failed_cli_run_says_why(
    warehouse: Warehouse, instance: dg.DagsterInstance, orders: Path
) -> None:
    missing = orders.with_name("missing.csv")
    failed = run_provider(warehouse, instance, "csv_upload", "ws-a", {"path": str(missing)})
    assert not failed.success
    assert failed.failure is not None and "missing.csv was not found" in failed.failure
    assert instance.get_run_by_id(failed.run_id).status == DagsterRunStatus.FAILURE


class Reports:
    """What a run waiting in a thread reports, and its outcome."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.outcome: RunOutcome | None = None
        self.error: BaseException | None = None

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.error is None, self.error
            assert time.monotonic() < deadline, f"never reported {text!r}: {self.lines}"
            time.sleep(0.1)


def in_thread(reports: Reports, launch) -> threading.Thread:  # type: ignore[no-untyped-def]
    def target() -> None:
        try:
            reports.outcome = launch(reports)
        except BaseException as exc:  # the test's assertion names it
            reports.error = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def started_elsewhere(instance: dg.DagsterInstance, workspace_id: str, path: Path) -> dg.DagsterRun:
    """A sync of the workspace's csv_upload connection that another process has started,
    as that process records it in the instance: a run of the job, tagged with the
    connection, STARTED."""
    from kpi_pipelines.definitions import defs

    run = instance.create_run_for_job(
        defs.resolve_job_def("csv_upload_job"),
        run_config={"ops": {"csv_upload_kpis": {"config": {"path": str(path)}}}},
        tags={CONNECTION_TAG: f"{workspace_id}/csv_upload", "dagster/partition": workspace_id},
    )
    report(instance, run, dg.DagsterEventType.RUN_START)
    started = instance.get_run_by_id(run.run_id)
    assert started is not None and started.status == DagsterRunStatus.STARTED
    return started


def report(instance: dg.DagsterInstance, run: dg.DagsterRun, event: dg.DagsterEventType) -> None:
    instance.report_dagster_event(
        dg.DagsterEvent(event_type_value=event.value, job_name=run.job_name), run_id=run.run_id
    )


def connection_runs(
    instance: dg.DagsterInstance, value: str, besides: set[str]
) -> list[dg.DagsterRun]:
    """The runs of the connection, but those of `besides` (the instance is the session's)."""
    runs = instance.get_runs(dg.RunsFilter(tags={CONNECTION_TAG: value}))
    return [run for run in runs if run.run_id not in besides]


def test_a_cli_run_waits_for_a_sync_of_its_connection_in_progress(
    warehouse: Warehouse, instance: dg.DagsterInstance, orders: Path
) -> None:
    """Two syncs of one connection never run at once, whoever started the first (here
    another process, as its run in the instance says); another workspace's does not wait."""
    config = {"path": str(orders)}
    before = {run.run_id for run in instance.get_runs()}
    blocker = started_elsewhere(instance, "ws-a", orders)
    try:
        other = Reports()
        in_thread(
            other,
            lambda r: run_provider(warehouse, instance, "csv_upload", "ws-b", config, report=r),
        ).join(120)
        assert other.outcome is not None and other.outcome.success, (other.error, other.outcome)
        assert not other.lines  # it waited for nothing

        waiting = Reports()
        thread = in_thread(
            waiting,
            lambda r: run_provider(warehouse, instance, "csv_upload", "ws-a", config, report=r),
        )
        waiting.wait_for(f"waiting for run {blocker.run_id} of the same connection")
        [ours] = connection_runs(instance, "ws-a/csv_upload", before | {blocker.run_id})
        assert ours.status == DagsterRunStatus.STARTING  # created, counted, not started
    finally:
        # ended either way: a run left in progress would hold the connection in later tests
        report(instance, blocker, dg.DagsterEventType.RUN_SUCCESS)
    thread.join(120)
    assert waiting.outcome is not None and waiting.outcome.success, (waiting.error, waiting.outcome)
    assert waiting.outcome.run_id == ours.run_id
    first = instance.get_run_record_by_id(blocker.run_id)
    second = instance.get_run_record_by_id(ours.run_id)
    assert first is not None and second is not None
    assert first.end_time is not None and second.start_time is not None
    assert first.end_time <= second.start_time


def heartbeat(instance: dg.DagsterInstance, age_seconds: float) -> None:
    """The run queue daemon's last heartbeat, `age_seconds` old (as a daemon writes it)."""
    instance.add_daemon_heartbeat(
        DaemonHeartbeat(
            timestamp=time.time() - age_seconds,
            daemon_type=QueuedRunCoordinatorDaemon.daemon_type(),
            daemon_id="test",
            errors=None,
        )
    )


def test_a_cli_run_is_queued_while_a_daemon_serves_the_queue_and_runs_here_once_it_stopped(
    warehouse: Warehouse, instance: dg.DagsterInstance, orders: Path
) -> None:
    """With a daemon's fresh heartbeat the run goes to Dagster's queue; when the heartbeats
    stop before the daemon started it, the command takes it off the queue and runs it here
    instead of waiting for ever. (A real daemon starting a CLI run: test_cli_runs.py.)"""
    before = {run.run_id for run in instance.get_runs()}
    heartbeat(instance, 0)
    waiting = Reports()
    thread = in_thread(
        waiting,
        lambda r: run_provider(
            warehouse, instance, "csv_upload", "ws-a", {"path": str(orders)}, report=r
        ),
    )
    waiting.wait_for("queued: Dagster's daemon starts it when its connection is free")
    [queued] = connection_runs(instance, "ws-a/csv_upload", before)
    assert queued.status == DagsterRunStatus.QUEUED

    heartbeat(instance, 600)  # the daemon stopped ten minutes ago
    thread.join(120)
    assert waiting.outcome is not None and waiting.outcome.success, (waiting.error, waiting.outcome)
    assert waiting.outcome.run_id != queued.run_id
    assert instance.get_run_by_id(queued.run_id).status == DagsterRunStatus.CANCELED
    waiting.wait_for(f"Dagster's daemon stopped before it started run {queued.run_id}")


def test_the_demo_refuses_while_a_daemon_serves_the_queue(
    warehouse: Warehouse, instance: dg.DagsterInstance
) -> None:
    """Its runs would run in the daemon's code server, without the demo's simulators: it
    says so and makes nothing."""
    heartbeat(instance, 0)
    result = CliRunner().invoke(app, ["demo"], catch_exceptions=False)
    print(result.output)  # the test's output, which the secret canary scans
    assert result.exit_code == 1
    assert "a Dagster daemon serves this instance's run queue" in result.output
    assert list_workspaces(warehouse) == []
