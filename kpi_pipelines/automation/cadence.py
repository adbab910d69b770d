"""Cadences: one schedule per provider that fans out per workspace, and freshness checks.

A scheduled provider's freshness check (`fresh_for_every_workspace`) belongs to its asset:
every run of the asset evaluates it after its syncs (a manual run or a backfill included),
and the `freshness_checks` job logs an evaluation of every provider's every 15 minutes.

A schedule tick asks the control plane which workspaces have an enabled connection to the
provider and requests runs over ranges of their partitions of its asset, up to the provider's
`workspaces_per_run` each (a run costs seconds of CPU before any work: one per workspace does
not reach thousands); each workspace still ends as its own partition's materialization or
failure. A connection that failed last time is retried in a run of its own; one that keeps
failing waits out its backoff (see warehouse.control.record_sync_outcome): the tick skips it
and says why. The tick's log (the UI's tick history) lists which workspaces went into which
run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,  # not exported; Dagster is pinned
)

from kpi_pipelines import settings
from kpi_pipelines.automation.partitions import provider_partitions, workspace_groups
from kpi_pipelines.automation.pools import run_target
from kpi_pipelines.integrations.shared.spec import Cadence, ProviderSpec
from kpi_pipelines.resources import WarehouseResource
from kpi_pipelines.warehouse.control import Connection, due_for_sync, list_connections
from kpi_pipelines.warehouse.database import Warehouse


def build_provider_schedule(
    spec: ProviderSpec, cadence: Cadence, job: dg.UnresolvedAssetJobDefinition
) -> dg.ScheduleDefinition:
    """The schedule of `spec`'s cadence; its runs get the cadence's run options."""
    provider, run_options = spec.key, cadence.run_options

    @dg.schedule(
        name=f"{provider}_schedule",
        job=job,
        cron_schedule=cadence.cron,
        execution_timezone="UTC",
        description=(
            f"{spec.display_name}, {cadence.description}: the workspaces with a {provider}"
            f" connection, up to {spec.workspaces_per_run} per run (KPI_WORKSPACES_PER_RUN);"
            " a connection that failed last time syncs in a run of its own, and one that"
            " keeps failing waits out its backoff."
        ),
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    def provider_schedule(
        context: dg.ScheduleEvaluationContext, warehouse: WarehouseResource
    ) -> list[dg.RunRequest] | dg.SkipReason:
        now = context.scheduled_execution_time or datetime.now(UTC)
        with warehouse.get().control() as db:
            connections = list_connections(db, provider=provider)
        ordered = context.instance.get_dynamic_partitions(provider_partitions(provider).name)
        plan = plan_tick(spec, connections, ordered, now)
        stamp = now.strftime("%Y%m%dT%H%M")
        requests = [_run_request(spec, run_options, run, stamp) for run in plan.runs]
        for line in plan.waiting:
            context.log.info(f"backing off {line}")
        if plan.unregistered:
            context.log.info(
                f"no {provider_partitions(provider).name} partition yet (the partition sensor"
                f" adds it within a minute): {', '.join(plan.unregistered)}"
            )
        for number, run in enumerate(plan.runs, 1):
            context.log.info(f"run {number} of {len(plan.runs)}: {run.describe()}")
        if not requests:
            reason = "; ".join(plan.waiting) or (
                f"waiting for the partitions of {', '.join(plan.unregistered)}"
                if plan.unregistered
                else f"no workspace has a {provider} connection"
            )
            return dg.SkipReason(reason)
        return requests

    return provider_schedule


@dataclass(frozen=True)
class PlannedRun:
    """One run of a tick: a group of workspaces side by side among the partitions (each
    syncing its only connection to the provider), or one named connection."""

    workspaces: tuple[str, ...]
    connection: str | None = None  # named: its workspace has several, or it failed last
    why_alone: str | None = None

    def describe(self) -> str:
        if len(self.workspaces) > 1:
            return f"{len(self.workspaces)} workspaces, {', '.join(self.workspaces)}"
        [workspace] = self.workspaces
        name = f"/{self.connection}" if self.connection else ""
        return f"{workspace}{name}" + (f" alone ({self.why_alone})" if self.why_alone else "")


@dataclass(frozen=True)
class TickPlan:
    runs: list[PlannedRun]
    waiting: list[str]  # connections backing off, with why
    # workspaces whose connection the partition sensor has not seen yet (their next tick)
    unregistered: list[str] = field(default_factory=list)


def plan_tick(
    spec: ProviderSpec,
    connections: Sequence[Connection],
    ordered: Sequence[str],
    now: datetime,
) -> TickPlan:
    """Which connections a tick syncs, in which runs. A workspace whose one connection to
    the provider is due joins a group of up to `workspaces_per_run`; a connection that failed
    last time runs alone (its retry does not fail its neighbours' run again), and so does
    each connection of a workspace with several (a run names the connection it syncs).
    Backing-off connections wait; a workspace whose partition of the provider's asset the
    partition sensor has not added yet waits for its next tick."""
    known = set(ordered)
    waiting: list[str] = []
    unregistered: list[str] = []
    per_workspace: dict[str, list[Connection]] = {}
    for connection in connections:
        per_workspace.setdefault(connection.workspace_id, []).append(connection)
    grouped: dict[str, str] = {}  # workspace -> the name of its one connection
    alone: list[PlannedRun] = []
    for workspace_id, own in per_workspace.items():
        due = []
        for connection in own:
            if due_for_sync(connection, now):
                due.append(connection)
            elif connection.enabled:
                waiting.append(
                    f"{workspace_id}/{connection.name}: {connection.consecutive_failures}"
                    f" failure(s), next try {connection.next_attempt_at:%Y-%m-%d %H:%M} UTC"
                    f" (last error: {connection.last_error})"
                )
        if workspace_id not in known:
            if due:
                unregistered.append(workspace_id)
            continue
        for connection in due:
            if len(own) > 1:
                alone.append(
                    PlannedRun((workspace_id,), connection.name, f"one of {len(own)} connections")
                )
            elif connection.consecutive_failures:
                alone.append(
                    PlannedRun(
                        (workspace_id,),
                        connection.name,
                        f"retrying after {connection.consecutive_failures} failure(s)",
                    )
                )
            else:
                grouped[workspace_id] = connection.name
    most = settings.workspaces_per_run(spec.workspaces_per_run)
    runs = [
        # a group of one names its connection, as a run of one workspace always did
        PlannedRun(tuple(group), grouped[group[0]] if len(group) == 1 else None)
        for group in workspace_groups(ordered, grouped, most)
    ]
    return TickPlan(runs + alone, waiting, unregistered)


def _run_request(
    spec: ProviderSpec, run_options: Mapping[str, Any], run: PlannedRun, stamp: str
) -> dg.RunRequest:
    first, last = run.workspaces[0], run.workspaces[-1]
    span = f"{first}:{run.connection or ''}" if first == last else f"{first}..{last}"
    target = run_target(spec.key, run.workspaces)
    return dg.RunRequest(
        run_key=f"{spec.key}:{span}:{stamp}",
        partition_key=target.partition_key,
        tags=target.tags,
        run_config={"ops": {spec.name: {"config": {**run_options, "connection": run.connection}}}},
    )


FRESH_FOR_EVERY_WORKSPACE = "fresh_for_every_workspace"
# stale connections a freshness evaluation lists (the metadata), and names (its description)
LISTED_STALE = 50
NAMED_STALE = 5


def freshness_check_spec(spec: ProviderSpec) -> dg.AssetCheckSpec:
    """The check of a scheduled provider's asset that every connected workspace synced
    within twice its cadence. Evaluated by every run of the asset, after its syncs, and on
    its own by `freshness_checks` every 15 minutes: never planned in a run that does not
    evaluate it, so the UI never shows it skipped."""
    return dg.AssetCheckSpec(
        FRESH_FOR_EVERY_WORKSPACE,
        asset=spec.asset_key,
        description=(
            f"Every workspace's enabled {spec.key} connection synced successfully within twice"
            " the provider's cadence; names the stale workspaces. Evaluated after each sync"
            " and every 15 minutes by the freshness_checks job."
        ),
    )


def evaluate_freshness(
    warehouse: Warehouse,
    spec: ProviderSpec,
    instance: dg.DagsterInstance,
    now: datetime | None = None,
) -> dg.AssetCheckEvaluation:
    """Which of the provider's enabled connections last synced successfully longer ago
    than twice its cadence (or never): named in the description (the first few) and the
    metadata (the first LISTED_STALE, with how many in all).

    Its target is the asset's latest materialization, whichever workspace's: the check is
    about every workspace, so the UI shows the evaluation until the asset is next
    materialized, by a run that evaluates it again. (An AssetCheckResult would target the
    run's own partition, and the UI would show a failed run's evaluation as "not
    evaluated" whenever another workspace was materialized last.) The freshness job logs
    it (`context.log_event`), and so does a run of the asset that fails."""
    if spec.cadence is None:
        raise ValueError(f"{spec.key} is manual: nothing is expected of it")
    allowed = 2 * spec.cadence.interval
    now = now or datetime.now(UTC)
    with warehouse.control() as db:
        connections = [c for c in list_connections(db, provider=spec.key) if c.enabled]
    stale = sorted(
        (c for c in connections if c.last_success_at is None or now - c.last_success_at > allowed),
        key=lambda c: (c.last_success_at is not None, c.last_success_at, c.workspace_id, c.name),
    )
    listed = {
        f"{c.workspace_id}/{c.name}": {
            "last_success": (
                c.last_success_at.isoformat(timespec="seconds") if c.last_success_at else "never"
            ),
            "failures_since": c.consecutive_failures,
        }
        for c in stale[:LISTED_STALE]
    }
    window = _hours(allowed)
    if stale:
        named = [
            f"{c.workspace_id}/{c.name} ("
            + (
                f"last synced {c.last_success_at:%Y-%m-%d %H:%M} UTC"
                if c.last_success_at
                else "never synced"
            )
            + (f", {c.consecutive_failures} failure(s) since" if c.consecutive_failures else "")
            + ")"
            for c in stale[:NAMED_STALE]
        ]
        more = f" and {len(stale) - NAMED_STALE:,} more" if len(stale) > NAMED_STALE else ""
        description = (
            f"{len(stale):,} of {len(connections):,} {spec.key} connection(s) not synced"
            f" successfully in the last {window}: {', '.join(named)}{more}"
        )
    else:
        description = (
            f"all {len(connections):,} {spec.key} connection(s) synced successfully in the"
            f" last {window}"
        )
    [latest] = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=spec.asset_key), limit=1
    ).records or [None]
    return dg.AssetCheckEvaluation(
        asset_key=spec.asset_key,
        check_name=FRESH_FOR_EVERY_WORKSPACE,
        target_materialization_data=(
            AssetCheckEvaluationTargetMaterializationData(
                storage_id=latest.storage_id, run_id=latest.run_id, timestamp=latest.timestamp
            )
            if latest
            else None
        ),
        passed=not stale,
        severity=dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={
            "stale_count": dg.MetadataValue.int(len(stale)),
            "stale": dg.MetadataValue.json(listed),
            "checked": dg.MetadataValue.text(
                f"{len(connections):,} connection(s), allowed {window} since the last sync"
            ),
        },
    )


def _hours(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:g} hours"


FRESHNESS_JOB = "freshness_checks"


def build_freshness_schedule(
    specs: list[ProviderSpec],
) -> tuple[dg.JobDefinition, dg.ScheduleDefinition]:
    """Every scheduled provider's freshness evaluated on its own, every 15 minutes: a
    provider whose syncs all fail turns its check red without waiting for a run of its own
    to succeed. The job syncs nothing, so it plans no check it could leave skipped: it logs
    each provider's evaluation of `fresh_for_every_workspace`."""
    scheduled = [spec for spec in specs if spec.cadence]

    @dg.op(name="evaluate_freshness", description="Every scheduled provider's freshness.")
    def evaluate_every_provider(context, warehouse: WarehouseResource) -> None:  # type: ignore[no-untyped-def]
        for spec in scheduled:
            context.log_event(evaluate_freshness(warehouse.get(), spec, context.instance))

    @dg.job(
        name=FRESHNESS_JOB,
        description="Every scheduled provider's freshness check, without syncing anything.",
    )
    def freshness_checks() -> None:
        evaluate_every_provider()

    schedule = dg.ScheduleDefinition(
        name="freshness_checks_schedule",
        job=freshness_checks,
        cron_schedule="*/15 * * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Evaluates every scheduled provider's freshness check on its own.",
    )
    return freshness_checks, schedule
