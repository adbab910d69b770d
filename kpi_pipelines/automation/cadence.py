"""Cadences: one schedule per provider that fans out per workspace, and freshness checks.

A schedule tick asks the control plane which workspaces have an enabled connection to the
provider and requests one run per workspace partition. A connection that keeps failing
waits out its backoff (see warehouse.control.record_sync_outcome): the tick skips it and
says why, so the reason shows in the UI's tick history.
"""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from kpi_pipelines.automation.pools import connection_tags
from kpi_pipelines.integrations.shared.spec import Cadence, ProviderSpec
from kpi_pipelines.resources import WarehouseResource
from kpi_pipelines.warehouse.control import due_for_sync, list_connections


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


def build_freshness_check(spec: ProviderSpec) -> dg.AssetChecksDefinition:
    """Every workspace connected to the provider synced successfully within twice its
    cadence (manual providers pass: nothing is expected of them)."""
    provider = spec.key
    cadence = spec.cadence.interval if spec.cadence else None

    @dg.asset_check(
        asset=spec.asset_key,
        name="fresh_for_every_workspace",
        description=(
            f"Every workspace's {provider} connection synced successfully within twice the"
            " provider's cadence (manual sources have no freshness expectation)."
        ),
        blocking=False,
    )
    def freshness(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        if cadence is None:
            return dg.AssetCheckResult(passed=True, metadata={"cadence": "manual"})
        now = datetime.now(UTC)
        with warehouse.get().control() as db:
            connections = [c for c in list_connections(db, provider=provider) if c.enabled]
        stale = {
            f"{c.workspace_id}/{c.name}": (
                c.last_success_at.isoformat(timespec="seconds") if c.last_success_at else "never"
            )
            for c in connections
            if c.last_success_at is None or now - c.last_success_at > 2 * cadence
        }
        return dg.AssetCheckResult(
            passed=not stale,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "cadence_hours": cadence.total_seconds() / 3600,
                "connections": len(connections),
                "stale": dg.MetadataValue.json(stale),
            },
        )

    return freshness


FRESHNESS_JOB = "freshness_checks"


def build_freshness_schedule(
    checks: list[dg.AssetChecksDefinition],
) -> tuple[dg.UnresolvedAssetJobDefinition, dg.ScheduleDefinition]:
    """The freshness checks on their own, every 15 minutes: a provider whose syncs all fail
    turns its check red without waiting for a run of its own to succeed."""
    job = dg.define_asset_job(
        FRESHNESS_JOB,
        selection=dg.AssetSelection.checks(*checks),
        description="Every provider's freshness check, without syncing anything.",
    )
    schedule = dg.ScheduleDefinition(
        name="freshness_checks_schedule",
        job=job,
        cron_schedule="*/15 * * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Evaluates every provider's freshness check on its own.",
    )
    return job, schedule
