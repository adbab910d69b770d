"""The KPI mart asset: per workspace, a daily table of every provider's metrics (built with
pandas from kpi_data, overrides applied, written back to PostgreSQL as `kpi_mart`), what a
dashboard reads, downstream of every provider's asset; with anomaly checks on it.

What the materialization and the checks put into Dagster's metadata has a fixed maximum size
whatever the number of metrics: counts, and the first `LISTED` metrics or drops (the
steepest first) with how many were left out."""

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd

from kpi_pipelines.automation.partitions import no_workspace, workspace_partitions
from kpi_pipelines.integrations.shared.spec import ProviderSpec
from kpi_pipelines.resources import WarehouseResource
from kpi_pipelines.warehouse.control import UnknownWorkspace, get_workspace
from kpi_pipelines.warehouse.mart import (
    MartTooLarge,
    daily_totals,
    missing_provider_days,
    sharp_drops,
    wide_frame,
    write_mart,
)

MART_KEY = dg.AssetKey("kpi_mart")
NO_SHARP_DROPS = "no_sharp_drops"
NO_MISSING_DAYS = "no_missing_provider_days"
# metric names and drops that the metadata lists
LISTED = 50
# metrics in the table of the latest days (a wider one is unreadable)
LATEST_COLUMNS = 20
# missing days listed per provider (the earliest)
LISTED_DAYS = 31


class MartConfig(dg.Config):
    # a metric whose latest whole day is lower than the day before by more than this share of it
    # fails the no_sharp_drops check
    drop_share: float = 0.5


def build_kpi_mart(specs: Iterable[ProviderSpec]) -> dg.AssetsDefinition:
    specs = list(specs)
    # providers on a cadence are expected every day; manual ones (CSV, Sheets) are not
    scheduled = sorted(spec.key for spec in specs if spec.cadence)

    @dg.asset(
        key=MART_KEY,
        description=(
            "Per workspace, one row per day and one column per metric of every provider"
            " (manual overrides applied), built with pandas from kpi_data and written to the"
            " kpi_mart table: what a dashboard reads."
        ),
        group_name="marts",
        kinds={"pandas", "postgres"},
        partitions_def=workspace_partitions,
        deps=[spec.asset_key for spec in specs],
        check_specs=[
            dg.AssetCheckSpec(
                NO_SHARP_DROPS,
                asset=MART_KEY,
                description=(
                    "No metric's latest whole day (up to the workspace's yesterday) fell by"
                    " more than `drop_share` of the day before."
                ),
            ),
            dg.AssetCheckSpec(
                NO_MISSING_DAYS,
                asset=MART_KEY,
                description=(
                    "Every scheduled provider has a value for every day since its first,"
                    " up to the workspace's yesterday."
                ),
            ),
        ],
    )
    def kpi_mart(
        context: dg.AssetExecutionContext, config: MartConfig, warehouse: WarehouseResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        workspace = context.partition_key
        with warehouse.get().tenant(workspace, actor=f"run:{context.run.run_id}") as db:
            try:
                timezone = get_workspace(db, workspace).timezone
            except UnknownWorkspace:
                raise dg.Failure(description=no_workspace(workspace), allow_retries=False) from None
            totals = daily_totals(db)
            try:
                frame = wide_frame(totals)
            except MartTooLarge as exc:  # before write_mart: the last mart built stays
                raise dg.Failure(description=f"{workspace}: {exc}", allow_retries=False) from None
            rows = write_mart(db, frame)
        yield dg.MaterializeResult(metadata=_summary(frame, rows))
        # A point's day is a local date (GA4 reports in its property's zone): the workspace's
        # today is not over, so the checks stop at its yesterday.
        yesterday = datetime.now(ZoneInfo(timezone)).date() - timedelta(days=1)
        drops = sharp_drops(totals, config.drop_share, last=yesterday)
        yield dg.AssetCheckResult(
            check_name=NO_SHARP_DROPS,
            passed=not drops,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "drop_share": config.drop_share,
                "drop_count": len(drops),
                # the steepest falls first
                "drops": dg.MetadataValue.json(
                    {
                        d.metric: {
                            "day": d.day.isoformat(),
                            "before": d.before,
                            "after": d.after,
                            "fell_by": round(d.share, 4),
                        }
                        for d in drops[:LISTED]
                    }
                ),
                "drops_not_listed": max(len(drops) - LISTED, 0),
            },
        )
        gaps = missing_provider_days(totals, scheduled, yesterday, listed=LISTED_DAYS)
        yield dg.AssetCheckResult(
            check_name=NO_MISSING_DAYS,
            passed=not gaps,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "providers_checked": dg.MetadataValue.json(scheduled),
                "missing_days": dg.MetadataValue.json(
                    {
                        provider: {
                            "count": missing.count,
                            "days": [day.isoformat() for day in missing.first],
                        }
                        for provider, missing in gaps.items()
                    }
                ),
            },
        )

    return kpi_mart


def _summary(frame: pd.DataFrame, rows: int) -> dict[str, dg.MetadataValue | int | str]:
    """Counts, the first `LISTED` metrics by name, the latest days of the first few."""
    not_listed = max(len(frame.columns) - LISTED, 0)
    metadata: dict[str, dg.MetadataValue | int | str] = {
        "rows": rows,
        "metric_count": len(frame.columns),
        "metrics": dg.MetadataValue.json(list(frame.columns[:LISTED])),
        "metrics_not_listed": not_listed,
    }
    if rows:
        metadata["first_day"] = frame.index.min().isoformat()
        metadata["last_day"] = frame.index.max().isoformat()
        latest = frame.iloc[-5:, :LATEST_COLUMNS].to_string()
        if len(frame.columns) > LATEST_COLUMNS:
            latest += f"\n({len(frame.columns) - LATEST_COLUMNS:,} more metrics not shown)"
        metadata["latest"] = dg.MetadataValue.md(f"```\n{latest}\n```")
    return metadata


MART_JOB = "kpi_mart_job"


def build_mart_schedule(
    mart: dg.AssetsDefinition,
) -> "tuple[dg.UnresolvedAssetJobDefinition, dg.ScheduleDefinition]":
    """The mart rebuilt for every workspace daily at 04:00 UTC (after the daily syncs)."""
    job = dg.define_asset_job(
        MART_JOB,
        selection=dg.AssetSelection.assets(mart),
        description="Rebuild the KPI mart of one workspace.",
    )

    @dg.schedule(
        name="kpi_mart_schedule",
        job=job,
        cron_schedule="0 4 * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Rebuilds every workspace's KPI mart daily, after the daily syncs.",
    )
    def kpi_mart_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        workspaces = context.instance.get_dynamic_partitions(workspace_partitions.name)
        day = context.scheduled_execution_time.date().isoformat()
        return [dg.RunRequest(run_key=f"{ws}:{day}", partition_key=ws) for ws in workspaces]

    return job, kpi_mart_schedule
