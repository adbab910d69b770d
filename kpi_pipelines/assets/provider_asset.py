"""One factory for every provider's workspace-partitioned KPI asset.

The asset binds the provider's adapter to the partition's workspace, runs
connect -> sync -> disconnect, records the connection's health (so a connection that keeps
failing is retried less often, with its reason shown), and reports the SyncResult, peak
memory and records per second as materialization metadata, plus data-quality checks on the
rows this workspace has in kpi_data.
"""

import contextlib
import resource
import time
from typing import Any, NoReturn

import dagster as dg
import psycopg
import sqlalchemy as sa

from kpi_pipelines.automation.partitions import workspace_partitions
from kpi_pipelines.integrations.shared.base_adapter import IntegrationAdapter, SyncContext
from kpi_pipelines.integrations.shared.errors import ProviderError
from kpi_pipelines.integrations.shared.redaction import (
    RedactingLogger,
    redact,
    redacted_traceback,
)
from kpi_pipelines.integrations.shared.spec import ProviderSpec
from kpi_pipelines.models import SyncResult
from kpi_pipelines.warehouse.control import get_connection, get_workspace, record_sync_outcome
from kpi_pipelines.warehouse.database import Warehouse, connection_lost

NO_MISSING_VALUES = "no_missing_values"
NO_DUPLICATE_KEYS = "no_duplicate_keys"
NO_REJECTED_RECORDS = "no_rejected_records"
# Rejected records named in a run's log line and check metadata (the rest are counted).
MAX_LOGGED_ERRORS = 20


# Errors whose message is meant for the person running the sync (what to fix, or wait for).
USER_FACING_ERRORS = (ValueError, LookupError, PermissionError, FileNotFoundError, ProviderError)


def build_provider_asset(spec: ProviderSpec) -> dg.AssetsDefinition:
    """The workspace-partitioned asset that syncs `spec`'s provider into kpi_data."""
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
        partitions_def=workspace_partitions,
        required_resource_keys={"warehouse", provider},
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
            dg.AssetCheckSpec(
                NO_REJECTED_RECORDS,
                asset=key,
                description=(
                    "Every record the provider sent passed validation (rejected ones are"
                    " skipped and named; the rest is stored)."
                ),
            ),
        ],
        metadata={"provider": provider, "display_name": spec.display_name},
        pool=spec.pool,
    )
    def provider_kpis(
        context: dg.AssetExecutionContext, config: config_class
    ) -> dg.MaterializeResult:  # type: ignore[valid-type]
        warehouse: Warehouse = context.resources.warehouse.get()
        adapter: IntegrationAdapter = getattr(context.resources, provider)
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
            log=RedactingLogger(context.log),
        )
        started = time.perf_counter()

        def fail(message: str, exc: BaseException, **metadata: Any) -> NoReturn:
            """Remember the failure on the connection and end the run with `message`, raised
            from None: no unredacted cause chain reaches Dagster's event log."""
            with contextlib.suppress(sa.exc.OperationalError, psycopg.OperationalError):
                _record_health(
                    warehouse, workspace_id, connection.id, spec, ok=False, error=message
                )
            raise dg.Failure(
                description=message,
                metadata={"error_type": type(exc).__name__, "provider": provider, **metadata},
                allow_retries=isinstance(exc, ProviderError) or connection_lost(exc),
            ) from None

        try:
            adapter.connect(sync_context)
            try:
                result = adapter.sync()
            finally:
                adapter.disconnect()
        except USER_FACING_ERRORS as exc:
            # Bad input, a broken connection or a provider that stays down: said plainly.
            fail(redact(str(exc)), exc)
        except Exception as exc:
            if connection_lost(exc):  # a restart, a failover, the network
                reason = redact(str(exc)).strip().splitlines()[0][:300]
                fail(
                    f"lost the warehouse database mid-sync ({reason}); every batch committed"
                    " before is kept, and the run can be retried",
                    exc,
                )
            # A bug or an unmapped provider failure: its message and traceback may carry a
            # secret, so only their redacted text leaves the run.
            fail(
                f"{provider} failed unexpectedly: {redact(f'{type(exc).__name__}: {exc}')}",
                exc,
                traceback=dg.MetadataValue.text(redacted_traceback(exc)),
            )
        elapsed = time.perf_counter() - started
        # Records the provider sent that failed validation are named in the run and its
        # checks, but do not back the connection off: only a provider that failed or stopped
        # the sync (a spent quota) does.
        _record_health(
            warehouse,
            workspace_id,
            connection.id,
            spec,
            ok=result.stopped_by is None,
            error=redact(result.stopped_by) if result.stopped_by else None,
        )
        result = result.model_copy(update={"errors": [redact(e) for e in result.errors]})
        if result.errors:
            context.log.warning(
                f"the sync reported {len(result.errors)} error(s):"
                f" {result.errors[:MAX_LOGGED_ERRORS]}"
            )
        return dg.MaterializeResult(
            metadata=_sync_metadata(result, elapsed),
            check_results=[
                *_quality_checks(warehouse, workspace_id, provider, context.run.run_id),
                dg.AssetCheckResult(
                    check_name=NO_REJECTED_RECORDS,
                    passed=result.records_rejected == 0,
                    severity=dg.AssetCheckSeverity.WARN,
                    metadata={
                        "records_rejected": result.records_rejected,
                        "errors": dg.MetadataValue.json(result.errors[:MAX_LOGGED_ERRORS]),
                    },
                ),
            ],
        )

    return provider_kpis


def _record_health(
    warehouse: Warehouse,
    workspace_id: str,
    connection_id: int | None,
    spec: ProviderSpec,
    *,
    ok: bool,
    error: str | None,
) -> None:
    assert connection_id is not None
    cadence = spec.cadence.interval if spec.cadence else None
    with warehouse.tenant(workspace_id, actor="health") as db:
        record_sync_outcome(db, connection_id, success=ok, error=error, cadence=cadence)


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
        **{
            name: dg.MetadataValue.json(value) if isinstance(value, dict | list) else value
            for name, value in result.details.items()
        },
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
