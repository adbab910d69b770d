"""One factory for every provider's workspace-partitioned KPI asset.

The asset's partitions are the workspaces connected to the provider. A run of it covers
one partition or a range of them (a backfill, or a selection launched from the UI, groups
up to the spec's `workspaces_per_run` workspaces per run: a run costs about 7 CPU-seconds
before any work, so one run per workspace does not reach thousands). Each workspace is
synced on its own (`workspace_sync.py`): its own connection, transactions, health record,
materialization with its metadata (the
SyncResult, this sync's peak memory, records per second, the API requests it sent and
those served from the in-sync cache), and its own failure. Workspaces that synced are
materialized even when another failed; the run then fails naming each workspace that did
not sync, and Dagster shows those partitions as failed. The data-quality checks cover the
rows of every workspace the run synced; a scheduled provider's freshness check
(automation/cadence.py) is evaluated after the syncs, whatever their outcome.
"""

import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import dagster as dg
import sqlalchemy as sa

from kpi_pipelines import settings
from kpi_pipelines.assets.workspace_sync import MAX_LOGGED_ERRORS, WorkspaceOutcome, sync_workspace
from kpi_pipelines.automation.cadence import evaluate_freshness, freshness_check_spec
from kpi_pipelines.automation.partitions import provider_partitions
from kpi_pipelines.integrations.shared.base_adapter import IntegrationAdapter
from kpi_pipelines.integrations.shared.own_assets import materialize_each
from kpi_pipelines.integrations.shared.spec import ProviderSpec
from kpi_pipelines.warehouse.database import Warehouse

NO_MISSING_VALUES = "no_missing_values"
NO_DUPLICATE_KEYS = "no_duplicate_keys"
NO_REJECTED_RECORDS = "no_rejected_records"
# Failed workspaces a run's failure message names one by one (all are in its metadata).
MAX_NAMED_FAILURES = 20


def build_provider_asset(spec: ProviderSpec) -> dg.AssetsDefinition:
    """The workspace-partitioned asset that syncs `spec`'s provider into kpi_data."""
    with warnings.catch_warnings():
        # backfill_policy is beta in Dagster 1.13; it is what groups workspaces into runs.
        warnings.simplefilter("ignore", dg.BetaWarning)
        return _provider_asset(spec)


def _provider_asset(spec: ProviderSpec) -> dg.AssetsDefinition:
    key = spec.asset_key
    config_class = spec.run_config
    provider = spec.key

    @dg.asset(
        key=key,
        description=spec.description,
        group_name=spec.group,
        kinds=set(spec.kinds) | {"postgres"},
        owners=list(spec.owners),
        tags={"kpi/provider": provider, **spec.tags},
        # the workspaces connected to the provider: a tick's lie side by side (one run each
        # group), and the UI shows the provider's own workspaces
        partitions_def=provider_partitions(provider),
        # Dagster's own freshness (evaluated by its daemon): stale when no workspace has
        # synced for twice the cadence; manual providers expect nothing
        freshness_policy=(
            dg.FreshnessPolicy.time_window(fail_window=2 * spec.cadence.interval)
            if spec.cadence and spec.cadence.interval
            else None
        ),
        # Materialized per workspace (an AssetMaterialization each), not as the op's output.
        output_required=False,
        # Nothing is stored for the output (what downstream assets wait for, see
        # _materializations): the data is in the warehouse.
        dagster_type=dg.Nothing,
        backfill_policy=dg.BackfillPolicy.multi_run(
            settings.workspaces_per_run(spec.workspaces_per_run)
        ),
        required_resource_keys={"warehouse", provider},
        check_specs=[
            # scheduled providers only: nothing is expected of a manual one
            *([freshness_check_spec(spec)] if spec.cadence else []),
            dg.AssetCheckSpec(
                NO_MISSING_VALUES,
                asset=key,
                description="Every stored point of this workspace has a finite value.",
            ),
            dg.AssetCheckSpec(
                NO_DUPLICATE_KEYS,
                asset=key,
                description="No two points share workspace, source, metric, time and breakdown.",
            ),
            dg.AssetCheckSpec(
                NO_REJECTED_RECORDS,
                asset=key,
                description=(
                    "Every record the provider sent passed validation (rejected ones are"
                    " skipped and named; the rest is stored)."
                ),
            ),
        ],
        metadata={
            "provider": provider,
            "display_name": spec.display_name,
            "engine": spec.engine.describe() if spec.engine else "its own",
        },
        pool=spec.pool,
    )
    def provider_kpis(
        context: dg.AssetExecutionContext, config: config_class
    ) -> Iterator[dg.AssetMaterialization | dg.Output | dg.AssetCheckResult]:  # type: ignore[valid-type]
        warehouse: Warehouse = context.resources.warehouse.get()
        adapter: IntegrationAdapter = getattr(context.resources, provider)
        workspace_ids = context.partition_keys
        several = len(workspace_ids) > 1
        outcomes: list[WorkspaceOutcome] = []
        # The provider's own downstream assets (Notion's notes) run only after the op's
        # output: when every workspace synced, the output carries each one's metadata.
        as_output = bool(spec.assets)
        for workspace_id in workspace_ids:
            outcome = sync_workspace(
                spec,
                adapter,
                warehouse,
                workspace_id,
                config.model_dump(),
                run_id=context.run.run_id,
                log=context.log,
                several=several,
            )
            outcomes.append(outcome)
            if outcome.result is not None and not spec.assets:
                yield dg.AssetMaterialization(
                    asset_key=key, partition=workspace_id, metadata=outcome.metadata
                )
            elif outcome.result is None:
                as_output = False
                if outcome.skipped:
                    context.log.info(f"{workspace_id}: passed over ({outcome.skipped})")
        synced = [o for o in outcomes if o.result is not None]
        failed = [o for o in outcomes if o.failure is not None]
        if spec.assets:
            yield from _materializations(
                context, spec, adapter, warehouse, synced, as_output=as_output, several=several
            )
        if synced or not failed:
            yield from _check_results(warehouse, provider, context.run.run_id, synced)
        if spec.cadence:  # after the syncs, failed ones too: what the UI shows is current
            try:
                freshness = evaluate_freshness(warehouse, spec, context.instance)
            except sa.exc.DBAPIError as exc:
                if not failed:
                    raise
                # The warehouse may be what the sync lost: its own failure says more.
                context.log.warning(
                    f"{provider}: freshness not evaluated after the failed sync"
                    f" ({type(exc.orig).__name__})"
                )
            else:
                if failed:
                    # logged as it is, so that it targets the asset's latest materialization,
                    # not this run's workspace's (which may not be the one last materialized)
                    context.log_event(freshness)
                else:
                    yield _as_result(freshness)
        if failed:
            raise _run_failure(provider, failed, outcomes)

    return provider_kpis


def _materializations(
    context: dg.AssetExecutionContext,
    spec: ProviderSpec,
    adapter: IntegrationAdapter,
    warehouse: Warehouse,
    synced: list[WorkspaceOutcome],
    *,
    as_output: bool,
    several: bool,
) -> Iterator[dg.AssetMaterialization | dg.Output]:
    """A provider with downstream assets: one output (each workspace's metadata scoped to
    its partition) when every workspace synced, so that their steps run; else one
    materialization per synced workspace, and their own assets' materializations of those
    workspaces here (Dagster skips the assets' steps without the output)."""
    if as_output:
        for outcome in synced:
            context.add_asset_metadata(outcome.metadata, partition_key=outcome.workspace_id)
        yield dg.Output(None)
        return
    for outcome in synced:
        yield dg.AssetMaterialization(
            asset_key=spec.asset_key, partition=outcome.workspace_id, metadata=outcome.metadata
        )
    workspace_ids = [o.workspace_id for o in synced]
    for own in spec.assets:
        try:
            yield from materialize_each(
                own, spec, adapter, warehouse, workspace_ids, context, several=several
            )
        except dg.Failure as exc:  # the run fails anyway, for the workspace that did not sync
            context.log.error(exc.description or f"{own.key} failed")


def _as_result(evaluation: dg.AssetCheckEvaluation) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=evaluation.check_name,
        passed=evaluation.passed,
        severity=evaluation.severity,
        description=evaluation.description,
        metadata=evaluation.metadata,
    )


def _run_failure(
    provider: str, failed: Sequence[WorkspaceOutcome], outcomes: Sequence[WorkspaceOutcome]
) -> dg.Failure:
    """The run's failure: one workspace's own, or a summary naming each that failed."""
    retryable = any(o.retryable for o in failed)
    if len(outcomes) == 1:
        [only] = failed
        return dg.Failure(
            description=only.failure,
            metadata=only.failure_metadata or None,
            allow_retries=retryable,
        )
    synced = [o.workspace_id for o in outcomes if o.result is not None]
    lines = [f"{o.workspace_id}: {o.failure}" for o in failed[:MAX_NAMED_FAILURES]]
    if len(failed) > MAX_NAMED_FAILURES:
        lines.append(f"... and {len(failed) - MAX_NAMED_FAILURES} more")
    return dg.Failure(
        description=(
            f"{provider}: {len(failed)} of {len(outcomes)} workspaces failed"
            f" ({len(synced)} synced and materialized)\n" + "\n".join(lines)
        ),
        metadata={
            "provider": provider,
            "workspaces_synced": dg.MetadataValue.json(synced),
            "workspaces_failed": dg.MetadataValue.json(
                {
                    o.workspace_id: {
                        "error": o.failure,
                        **{
                            name: getattr(value, "value", value)
                            for name, value in o.failure_metadata.items()
                        },
                    }
                    for o in failed
                }
            ),
        },
        allow_retries=retryable,
    )


def _check_results(
    warehouse: Warehouse, provider: str, run_id: str, synced: Sequence[WorkspaceOutcome]
) -> list[dg.AssetCheckResult]:
    """The data-quality checks over the rows of every workspace the run synced."""
    points = missing = duplicates = 0
    failing: dict[str, list[str]] = {NO_MISSING_VALUES: [], NO_DUPLICATE_KEYS: []}
    for outcome in synced:
        stats = _quality(warehouse, outcome.workspace_id, provider, run_id)
        points += stats.points
        missing += stats.missing
        duplicates += stats.duplicates
        if stats.missing:
            failing[NO_MISSING_VALUES].append(outcome.workspace_id)
        if stats.duplicates:
            failing[NO_DUPLICATE_KEYS].append(outcome.workspace_id)
    rejected = [o for o in synced if o.result is not None and o.result.records_rejected]
    several = len(synced) > 1
    errors = [
        f"{o.workspace_id}: {error}" if several else error
        for o in rejected
        for error in o.result.errors  # type: ignore[union-attr]
    ][:MAX_LOGGED_ERRORS]
    scope: dict[str, Any] = {"workspaces_checked": len(synced)}
    return [
        dg.AssetCheckResult(
            check_name=NO_MISSING_VALUES,
            passed=missing == 0,
            metadata={
                **scope,
                "points": points,
                "missing_values": missing,
                "failing_workspaces": dg.MetadataValue.json(failing[NO_MISSING_VALUES]),
            },
        ),
        dg.AssetCheckResult(
            check_name=NO_DUPLICATE_KEYS,
            passed=duplicates == 0,
            metadata={
                **scope,
                "points": points,
                "duplicate_keys": duplicates,
                "failing_workspaces": dg.MetadataValue.json(failing[NO_DUPLICATE_KEYS]),
            },
        ),
        dg.AssetCheckResult(
            check_name=NO_REJECTED_RECORDS,
            passed=not rejected,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                **scope,
                "records_rejected": sum(o.result.records_rejected for o in rejected),  # type: ignore[union-attr]
                "errors": dg.MetadataValue.json(errors),
                "failing_workspaces": dg.MetadataValue.json([o.workspace_id for o in rejected]),
            },
        ),
    ]


def _quality(warehouse: Warehouse, workspace_id: str, provider: str, run_id: str) -> Any:
    with warehouse.tenant(workspace_id, actor=f"run:{run_id}") as db:
        return db.execute(
            sa.text(
                "SELECT count(*) AS points,"
                " count(*) FILTER (WHERE value IS NULL OR value IN ('NaN', 'Infinity', '-Infinity'))"
                "   AS missing,"
                " (SELECT count(*) FROM (SELECT 1 FROM kpi_data d WHERE d.source = :source"
                '   GROUP BY metric, "timestamp", dimensions_key HAVING count(*) > 1) dup)'
                "   AS duplicates"
                " FROM kpi_data WHERE source = :source"
            ),
            {"source": provider},
        ).one()
