"""The runs the CLI starts (`sync`, `import`, `demo`): the project's own jobs (`stripe_job`,
..., `kpi_mart_job`) as runs of the code location `kpi_pipelines`, so the UI lists them under
the job's name and can re-execute them, waited for and summed up in the terminal.

How a run starts, cheapest first while the rule of one sync per connection holds:
- No Dagster daemon serves the run queue (the quick start, a cron job): the run executes in
  this process (as `dagster job execute` does, about as cheap as `materialize`), after
  every run in progress that the instance's tag concurrency limits say it must wait for
  (`kpi/connection`: another sync of the same connection). Created already STARTING, it
  counts for a daemon that starts meanwhile, which then holds back any queued run of that
  connection; two CLIs order themselves by which run was created first.
- A daemon serves the queue (`kpi-pipelines ui` or `dev`, a deployment): the run is queued
  (as `dagster job launch` does) and the daemon starts it in its own process when the limits
  allow. A daemon that stops before it starts a queued run leaves it to this process:
  it is taken off the queue and executed here instead.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

# Dagster's machinery behind `dagster job execute` and `dagster job launch` (dagster is
# pinned: see pyproject.toml).
from dagster._core.definitions.reconstruct import ReconstructableJob, ReconstructableRepository
from dagster._core.definitions.repository_definition import SINGLETON_REPOSITORY_NAME
from dagster._core.execution.api import execute_run
from dagster._core.remote_origin import (
    InProcessCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster._core.storage.dagster_run import (
    ACTIVE_RUN_STATUSES,
    FINISHED_STATUSES,
    DagsterRunStatus,
    RunsFilter,
)
from dagster._core.storage.tags import PARTITION_NAME_TAG
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._daemon.controller import DEFAULT_HEARTBEAT_INTERVAL_SECONDS
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
    QueuedRunCoordinatorDaemon,
)
from dagster._utils.tags import TagConcurrencyLimitsCounter

from kpi_pipelines.assets.kpi_mart import MART_JOB
from kpi_pipelines.automation.partitions import register_partition
from kpi_pipelines.automation.pools import connection_tags
from kpi_pipelines.dagster_instance import CODE_LOCATION
from kpi_pipelines.integrations.shared.redaction import redact
from kpi_pipelines.integrations.shared.spec import spec_for
from kpi_pipelines.run_reports import failure_reason
from kpi_pipelines.warehouse.control import get_workspace
from kpi_pipelines.warehouse.database import Warehouse

DEFINITIONS_MODULE = "kpi_pipelines.definitions"
# A daemon writes a heartbeat every 30 s: one older than two of them is a daemon gone.
DAEMON_GONE_SECONDS = 2 * DEFAULT_HEARTBEAT_INTERVAL_SECONDS
POLL_SECONDS = 0.5

Report = Callable[[str], None]


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    success: bool
    # What the failed step said (redacted), when the run failed.
    failure: str | None = None
    # The metadata of the run's first materialization.
    metadata: dict[str, Any] = field(default_factory=dict)


def run_provider(
    warehouse: Warehouse,
    instance: dg.DagsterInstance,
    provider: str,
    workspace_id: str,
    config: Mapping[str, Any] | None = None,
    *,
    report: Report | None = None,
) -> RunOutcome:
    """One run of the provider's job for one workspace (`config`: its asset's run config),
    tagged with the workspace's connection. Raises UnknownWorkspace (and registers no
    partition) when the workspace does not exist."""
    spec = spec_for(provider)
    with warehouse.control() as db:
        get_workspace(db, workspace_id)
    register_partition(instance, workspace_id, spec.key)
    return run_job(
        instance,
        spec.job_name,
        workspace_id,
        {"ops": {spec.name: {"config": dict(config or {})}}},
        tags=connection_tags(workspace_id, spec.key),
        report=report,
    )


def run_mart(
    instance: dg.DagsterInstance, workspace_id: str, *, report: Report | None = None
) -> RunOutcome:
    """One run of the KPI mart's job for one workspace."""
    register_partition(instance, workspace_id)
    return run_job(instance, MART_JOB, workspace_id, {}, report=report)


def run_job(
    instance: dg.DagsterInstance,
    job_name: str,
    partition: str,
    run_config: Mapping[str, Any],
    *,
    tags: Mapping[str, str] | None = None,
    report: Report | None = None,
) -> RunOutcome:
    """A run of the job `job_name` of the project's definitions for one partition, to its
    end (`report` is told what it waits for)."""
    report = report or (lambda _: None)
    job = _reconstructable_job(job_name)
    definition = job.get_definition()
    run_tags = {**definition.run_tags, **(tags or {}), PARTITION_NAME_TAG: partition}

    def create(status: DagsterRunStatus | None) -> dg.DagsterRun:
        return instance.create_run_for_job(
            definition,
            run_config=dict(run_config),
            tags=run_tags,
            status=status,
            remote_job_origin=_remote_origin(job_name),
            job_code_origin=job.get_python_origin(),
        )

    if queue_served(instance):
        queued = create(None)
        # The QueuedRunCoordinator only enqueues: it needs no workspace.
        instance.submit_run(queued.run_id, workspace=None)  # type: ignore[arg-type]
        if _wait_for_queue(instance, queued.run_id, report):
            return outcome(instance, queued.run_id)
        report(f"Dagster's daemon stopped before it started run {queued.run_id}: running it here")
    run = create(DagsterRunStatus.STARTING)
    if queue_served(instance):
        # A daemon started while the run was created, and may be starting a queued run of
        # the same connection: the queue decides instead.
        instance.report_run_canceled(run, message="queued instead: a daemon serves the queue")
        return run_job(instance, job_name, partition, run_config, tags=tags, report=report)
    return _execute_here(instance, job, run, report)


def _reconstructable_job(job_name: str) -> ReconstructableJob:
    repository = ReconstructableRepository.for_module(
        DEFINITIONS_MODULE, "defs", working_directory=os.getcwd()
    )
    return repository.get_reconstructable_job(job_name)


def _remote_origin(job_name: str) -> RemoteJobOrigin:
    """Where the UI finds the job: by location, repository and job name."""
    location = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(
            executable_path=sys.executable,
            module_name=DEFINITIONS_MODULE,
            working_directory=os.getcwd(),
        ),
        location_name=CODE_LOCATION,
    )
    return RemoteRepositoryOrigin(location, SINGLETON_REPOSITORY_NAME).get_job_origin(job_name)


def queue_served(instance: dg.DagsterInstance) -> bool:
    """Whether a daemon dequeues the instance's queued runs now."""
    if not isinstance(instance.run_coordinator, QueuedRunCoordinator):
        return False
    beat = instance.get_daemon_heartbeats().get(QueuedRunCoordinatorDaemon.daemon_type())
    return beat is not None and time.time() - beat.timestamp <= DAEMON_GONE_SECONDS


def _wait_for_queue(instance: dg.DagsterInstance, run_id: str, report: Report) -> bool:
    """Until the queued run has finished (True), or is still queued with no daemon left to
    start it, and is taken off the queue (False). Stopped (Ctrl-C), the command takes a run
    still queued off the queue; one already started goes on in the daemon's worker."""
    try:
        while True:
            run = instance.get_run_by_id(run_id)
            assert run is not None
            if run.status in FINISHED_STATUSES:
                return True
            if run.status == DagsterRunStatus.QUEUED:
                if not queue_served(instance) and instance.run_coordinator.cancel_run(run_id):
                    return False
                report(
                    f"run {run_id} queued: Dagster's daemon starts it when its connection is free"
                )
            else:
                report(f"run {run_id} started by Dagster's daemon")
            time.sleep(POLL_SECONDS)
    except BaseException:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.status == DagsterRunStatus.QUEUED:
            instance.run_coordinator.cancel_run(run_id)
        raise


def _execute_here(
    instance: dg.DagsterInstance, job: ReconstructableJob, run: dg.DagsterRun, report: Report
) -> RunOutcome:
    try:
        while blocking := _runs_to_wait_for(instance, run):
            report(f"waiting for run {', '.join(blocking)} of the same connection to finish")
            time.sleep(POLL_SECONDS)
    except BaseException:
        instance.report_run_canceled(run, message="the command was stopped before the run started")
        raise
    # The run's log is in the instance (and the UI); the terminal gets the caller's summary.
    with open(os.devnull, "w") as quiet, contextlib.redirect_stderr(quiet):
        execute_run(job, run, instance)
    return outcome(instance, run.run_id)


def _runs_to_wait_for(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[str]:
    """The runs in progress, created before `run`, that the instance's tag concurrency
    limits say `run` must wait for (the rule the run queue applies to a queued run)."""
    queue = instance.get_concurrency_config().run_queue_config
    limits = list(queue.tag_concurrency_limits) if queue else []
    if not limits:
        return []
    records = instance.get_run_records(RunsFilter(statuses=ACTIVE_RUN_STATUSES))
    ours = instance.get_run_record_by_id(run.run_id)
    assert ours is not None
    earlier = [r.dagster_run for r in records if r.storage_id < ours.storage_id]
    if not TagConcurrencyLimitsCounter(limits, earlier).is_blocked(run):
        return []
    alone = [r.run_id for r in earlier if TagConcurrencyLimitsCounter(limits, [r]).is_blocked(run)]
    return alone or [r.run_id for r in earlier]


def outcome(instance: dg.DagsterInstance, run_id: str) -> RunOutcome:
    """How a finished run ended, read from its events in the instance."""
    run = instance.get_run_by_id(run_id)
    assert run is not None
    metadata: dict[str, Any] = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        materialization = entry.asset_materialization
        if materialization is not None:
            metadata = {k: v.value for k, v in materialization.metadata.items()}
            break
    if run.status == DagsterRunStatus.SUCCESS:
        return RunOutcome(run_id, True, metadata=metadata)
    return RunOutcome(run_id, False, failure=_failure(instance, run), metadata=metadata)


def _failure(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    """What the failed step said (a Failure's description, else its error's message)."""
    failures = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    reason = failure_reason(entry.dagster_event for entry in failures if entry.dagster_event)
    if reason:
        return redact(reason)
    return (
        f"run {run.run_id} ended {run.status.value.lower()};"
        " see it in the Dagster UI (`kpi-pipelines ui`)"
    )
