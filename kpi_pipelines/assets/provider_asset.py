"""One factory for every provider's workspace-partitioned KPI asset.

The asset binds the provider's adapter to the partition's workspace, runs
connect -> sync -> disconnect, records the connection's health (so a connection that keeps
failing is retried less often, with its reason shown), and reports the SyncResult, peak
memory and records per second as materialization metadata, plus data-quality checks on the
rows this workspace has in kpi_data.
"""

import resource
import time
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import sqlalchemy as sa

from kpi_pipelines.automation.partitions import workspace_partitions
from kpi_pipelines.integrations.shared.base_adapter import IntegrationAdapter, SyncContext
from kpi_pipelines.integrations.shared.errors import ProviderError
from kpi_pipelines.integrations.shared.redaction import redact
from kpi_pipelines.integrations.shared.types import SyncResult
from kpi_pipelines.warehouse.control import get_connection, get_workspace, record_sync_outcome
from kpi_pipelines.warehouse.database import Warehouse

NO_MISSING_VALUES = "no_missing_values"
NO_DUPLICATE_KEYS = "no_duplicate_keys"


# Errors whose message is meant for the person running the sync (what to fix, or wait for).
USER_FACING_ERRORS = (ValueError, LookupError, PermissionError, FileNotFoundError, ProviderError)


class ProviderRunConfig(dg.Config):
    """Run configuration every provider accepts (launchpad, backfills, the CLI)."""

    connection: str | None = None  # the connection's name, when a workspace has several
    # Re-list every object and land what differs from the landed copy, instead of reading
    # changes since the cursor (providers that support it; the daily Stripe schedule sets it).
    reconcile: bool = False


def kpi_asset_key(provider: str) -> dg.AssetKey:
    return dg.AssetKey([provider, "kpi_data"])


def build_provider_asset(
    *,
    provider: str,
    resource_key: str,
    description: str,
    group_name: str,
    kinds: set[str],
    config_class: type[ProviderRunConfig] = ProviderRunConfig,
    pool: str | None = None,
) -> dg.AssetsDefinition:
    key = kpi_asset_key(provider)

    @dg.asset(
        key=key,
        description=description,
        group_name=group_name,
        kinds=kinds | {"postgres"},
        partitions_def=workspace_partitions,
        required_resource_keys={"warehouse", resource_key},
        check_specs=[
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
        ],
        metadata={"provider": provider},
        pool=pool,
    )
    def provider_kpis(
        context: dg.AssetExecutionContext, config: config_class
    ) -> dg.MaterializeResult:  # type: ignore[valid-type]
        warehouse: Warehouse = context.resources.warehouse.get()
        adapter: IntegrationAdapter = getattr(context.resources, resource_key)
        workspace_id = context.partition_key
        try:
            with warehouse.control() as db:
                workspace = get_workspace(db, workspace_id)
                connection = get_connection(db, workspace_id, provider, config.connection)
        except LookupError as exc:
            raise dg.Failure(description=str(exc)) from None
        sync_context = SyncContext(
            warehouse=warehouse,
            workspace=workspace,
            connection=connection,
            run_id=context.run.run_id,
            options=config.model_dump(),
            log=context.log,
        )
        started = time.perf_counter()
        try:
            adapter.connect(sync_context)
            try:
                result = adapter.sync()
            finally:
                adapter.disconnect()
        except USER_FACING_ERRORS as exc:
            # Bad input, a broken connection or a provider that stays down: say so plainly
            # in the UI instead of a stack trace, and remember it on the connection.
            message = redact(str(exc))
            _record_health(warehouse, workspace_id, connection.id, adapter, ok=False, error=message)
            raise dg.Failure(
                description=message,
                metadata={"error_type": type(exc).__name__, "provider": provider},
                allow_retries=isinstance(exc, ProviderError),
            ) from None
        except Exception as exc:
            _record_health(
                warehouse, workspace_id, connection.id, adapter, ok=False, error=redact(str(exc))
            )
            raise
        elapsed = time.perf_counter() - started
        _record_health(
            warehouse,
            workspace_id,
            connection.id,
            adapter,
            ok=result.success,
            error="; ".join(result.errors[:5]) or None,
        )
        if result.errors:
            context.log.warning(f"{len(result.errors)} record(s) rejected: {result.errors[:20]}")
        return dg.MaterializeResult(
            metadata=_sync_metadata(result, elapsed),
            check_results=_quality_checks(warehouse, workspace_id, provider, context.run.run_id),
        )

    return provider_kpis


def _record_health(
    warehouse: Warehouse,
    workspace_id: str,
    connection_id: int | None,
    adapter: IntegrationAdapter,
    *,
    ok: bool,
    error: str | None,
) -> None:
    assert connection_id is not None
    with warehouse.tenant(workspace_id, actor="health") as db:
        record_sync_outcome(
            db, connection_id, success=ok, error=error, cadence=type(adapter).cadence
        )


def _sync_metadata(result: SyncResult, elapsed: float) -> dict[str, Any]:
    # ru_maxrss is in KiB on Linux: the run process's peak resident memory.
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "success": result.success,
        "records_processed": result.records_processed,
        "records_rejected": result.records_rejected,
        "points_written": result.points_written,
        "points_unchanged": result.points_unchanged,
        "errors": dg.MetadataValue.json(result.errors[:100]),
        "last_sync_at": dg.MetadataValue.timestamp(result.last_sync_at),
        "seconds": round(elapsed, 3),
        "records_per_second": round(result.records_processed / max(elapsed, 1e-9), 1),
        "peak_memory_mb": round(peak_mb, 1),
        **{f"{phase}_seconds": round(seconds, 3) for phase, seconds in result.timings.items()},
    }


def _quality_checks(
    warehouse: Warehouse, workspace_id: str, provider: str, run_id: str
) -> list[dg.AssetCheckResult]:
    with warehouse.tenant(workspace_id, actor=f"run:{run_id}") as db:
        stats = db.execute(
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
    return [
        dg.AssetCheckResult(
            check_name=NO_MISSING_VALUES,
            passed=stats.missing == 0,
            metadata={"points": stats.points, "missing_values": stats.missing},
        ),
        dg.AssetCheckResult(
            check_name=NO_DUPLICATE_KEYS,
            passed=stats.duplicates == 0,
            metadata={"points": stats.points, "duplicate_keys": stats.duplicates},
        ),
    ]


def last_sync_at(warehouse: Warehouse, provider: str) -> dict[str, datetime | None]:
    """Per workspace, when its connection to `provider` last synced successfully."""
    with warehouse.control() as db:
        rows = db.execute(
            sa.text(
                "SELECT workspace_id, max(last_success_at) FROM connections"
                " WHERE provider = :p AND enabled GROUP BY workspace_id"
            ),
            {"p": provider},
        )
        return {ws: (ts.astimezone(UTC) if ts else None) for ws, ts in rows}
