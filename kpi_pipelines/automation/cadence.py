"""Cadences: one schedule per provider that fans out per workspace, and freshness checks.

A scheduled provider's freshness check (`fresh_for_every_workspace`) belongs to its asset:
every run of the asset evaluates it after its syncs (a manual run or a backfill included),
and the `freshness_checks` job logs an evaluation of every provider's every 15 minutes.

A schedule tick asks the control plane which workspaces have an enabled connection to the
provider and requests one run per workspace partition. A connection that keeps failing
waits out its backoff (see warehouse.control.record_sync_outcome): the tick skips it and
says why, so the reason shows in the UI's tick history.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,  # not exported; Dagster is pinned
)

from kpi_pipelines.automation.pools import connection_tags
from kpi_pipelines.integrations.shared.spec import Cadence, ProviderSpec
from kpi_pipelines.resources import WarehouseResource
from kpi_pipelines.warehouse.control import due_for_sync, list_connections
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
            f"{spec.display_name}, {cadence.description}: one run per workspace with a"
            f" {provider} connection (a failing connection waits out its backoff)."
        ),
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    def provider_schedule(
        context: dg.ScheduleEvaluationContext, warehouse: WarehouseResource
    ) -> list[dg.RunRequest] | dg.SkipReason:
        now = context.scheduled_execution_time or datetime.now(UTC)
        with warehouse.get().control() as db:
            connections = list_connections(db, provider=provider)
        requests, waiting = [], []
        known = set(context.instance.get_dynamic_partitions("workspace"))
        for connection in connections:
            if not due_for_sync(connection, now):
                waiting.append(
                    f"{connection.workspace_id}/{connection.name}: {connection.consecutive_failures}"
                    f" failure(s), next try {connection.next_attempt_at:%Y-%m-%d %H:%M} UTC"
                    f" (last error: {connection.last_error})"
                )
                continue
            if connection.workspace_id not in known:
                continue  # the partition sensor adds it on its next tick
            stamp = now.strftime("%Y%m%dT%H%M")
            requests.append(
                dg.RunRequest(
                    run_key=f"{provider}:{connection.workspace_id}:{connection.name}:{stamp}",
                    partition_key=connection.workspace_id,
                    tags=connection_tags(connection.workspace_id, provider),
                    run_config={
                        "ops": {
                            spec.name: {"config": {**run_options, "connection": connection.name}}
                        }
                    },
                )
            )
        for line in waiting:
            context.log.info(f"backing off {line}")
        if not requests:
            reason = "; ".join(waiting) or f"no workspace has a {provider} connection"
            return dg.SkipReason(reason)
        return requests

    return provider_schedule


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
