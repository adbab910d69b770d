"""The KPI mart asset: per workspace, a daily table of every provider's metrics and their
breakdowns (built with pandas from kpi_data, overrides applied, written back to PostgreSQL
as `kpi_mart`), what a dashboard reads, downstream of every provider's asset; with anomaly
checks on it, one result per workspace (Dagster's partitioned asset checks).

What the materialization and the checks put into Dagster's metadata and descriptions has a
fixed maximum size whatever the number of metrics: counts, and the first `LISTED` metrics or
drops (the steepest first) with how many were left out. Numbers that would plot as a flat
line in the UI (the threshold, what was checked) are text, not numbers."""

import warnings
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import dagster as dg
from pydantic import Field

from kpi_pipelines.automation.partitions import no_workspace, workspace_partitions
from kpi_pipelines.integrations.shared.spec import ProviderSpec
from kpi_pipelines.resources import WarehouseResource
from kpi_pipelines.warehouse.control import UnknownWorkspace, get_workspace
from kpi_pipelines.warehouse.mart import (
    Drop,
    MartBreakdowns,
    MartTooLarge,
    MissingDays,
    daily_totals,
    mart_breakdowns,
    missing_provider_days,
    sharp_drops,
    watched_columns,
    wide_frame,
    write_mart,
)

if TYPE_CHECKING:
    import pandas as pd

MART_KEY = dg.AssetKey("kpi_mart")
NO_SHARP_DROPS = "no_sharp_drops"
NO_MISSING_DAYS = "no_missing_provider_days"
# metric names and drops that the metadata lists
LISTED = 50
# metrics in the table of the latest days (a wider one is unreadable)
LATEST_COLUMNS = 20
# missing days listed per provider (the earliest)
LISTED_DAYS = 31
# drops, metrics or days a check's description names (the metadata lists more)
NAMED = 3


class MartConfig(dg.Config):
    # a watched metric whose latest whole day is lower than the day before by more than this
    # share of it fails the no_sharp_drops check
    drop_share: float = Field(default=0.5, gt=0, le=1)
    # mart columns watched besides the providers' levels, as fnmatch patterns: "signups",
    # "csv_upload.*", "*" for every metric
    watch: list[str] = Field(default_factory=list)


def build_kpi_mart(specs: Iterable[ProviderSpec]) -> dg.AssetsDefinition:
    specs = list(specs)
    # providers on a cadence are expected every day; manual ones (CSV, Sheets) are not
    scheduled = sorted(spec.key for spec in specs if spec.cadence)
    levels = {(spec.key, metric) for spec in specs for metric in spec.levels}
    with warnings.catch_warnings():
        # partitioned asset checks are a preview in Dagster 1.13: one result per workspace
        warnings.simplefilter("ignore", dg.PreviewWarning)
        check_specs = [
            dg.AssetCheckSpec(
                NO_SHARP_DROPS,
                asset=MART_KEY,
                partitions_def=workspace_partitions,
                description=(
                    "Per workspace: no watched metric (the providers' levels, such as MRR and"
                    " active customers, and those the run's `watch` names) fell by more than"
                    " `drop_share` from one day to the next on its latest whole day (up to"
                    " the workspace's yesterday). Names the workspace, metrics and days."
                ),
            ),
            dg.AssetCheckSpec(
                NO_MISSING_DAYS,
                asset=MART_KEY,
                partitions_def=workspace_partitions,
                description=(
                    "Per workspace: every scheduled provider has a value for every day since"
                    " its first, up to the workspace's yesterday. Names the workspace,"
                    " providers and days."
                ),
            ),
        ]

    @dg.asset(
        key=MART_KEY,
        description=(
            "Per workspace, one row per day: every provider's metric totals (one JSON key"
            " each) and their breakdowns (manual overrides applied), built with pandas from"
            " kpi_data and written to the kpi_mart table: what a dashboard reads."
        ),
        group_name="marts",
        kinds={"pandas", "postgres"},
        partitions_def=workspace_partitions,
        deps=[spec.asset_key for spec in specs],
        check_specs=check_specs,
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
            breakdowns = mart_breakdowns(db)
            rows = write_mart(db, frame, breakdowns)
        yield dg.MaterializeResult(metadata=_summary(frame, rows, breakdowns))
        # A point's day is a local date (GA4 reports in its property's zone): the workspace's
        # today is not over, so the checks stop at its yesterday.
        yesterday = datetime.now(ZoneInfo(timezone)).date() - timedelta(days=1)
        watched = watched_columns(totals, levels, config.watch)
        drops = sharp_drops(totals, config.drop_share, last=yesterday, columns=watched)
        yield dg.AssetCheckResult(
            check_name=NO_SHARP_DROPS,
            passed=not drops,
            severity=dg.AssetCheckSeverity.WARN,
            description=_drops_description(
                workspace, drops, sorted(watched), config.drop_share, yesterday
            ),
            metadata={
                "workspace": dg.MetadataValue.text(workspace),
                "threshold": dg.MetadataValue.text(f"{config.drop_share:.0%} in a day"),
                "metrics_watched": dg.MetadataValue.text(f"{len(watched):,}"),
                "drop_count": len(drops),
                # the steepest falls first
                "drops": dg.MetadataValue.json(
                    {
                        d.metric: {
                            "day": d.day.isoformat(),
                            "day_before": (d.day - timedelta(days=1)).isoformat(),
                            "before": d.before,
                            "after": d.after,
                            "fell_by": round(d.share, 4),
                        }
                        for d in drops[:LISTED]
                    }
                ),
            },
        )
        gaps = missing_provider_days(totals, scheduled, yesterday, listed=LISTED_DAYS)
        yield dg.AssetCheckResult(
            check_name=NO_MISSING_DAYS,
            passed=not gaps,
            severity=dg.AssetCheckSeverity.WARN,
            description=_gaps_description(workspace, gaps, scheduled, yesterday),
            metadata={
                "workspace": dg.MetadataValue.text(workspace),
                "providers_checked": dg.MetadataValue.json(scheduled),
                "missing_day_count": sum(missing.count for missing in gaps.values()),
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


def _some(names: Sequence[str], total: int | None = None) -> str:
    """The first NAMED of `names`, and how many more."""
    total = len(names) if total is None else total
    shown = ", ".join(names[:NAMED])
    return shown + (f" and {total - NAMED:,} more" if total > NAMED else "")


def _drops_description(
    workspace: str, drops: list[Drop], watched: list[str], share: float, last: date
) -> str:
    if not watched:
        return (
            f"{workspace}: no metric watched (no provider level has a value; a run's `watch`"
            " names more)"
        )
    if not drops:
        return (
            f"{workspace}: none of the {len(watched):,} watched metrics ({_some(watched)})"
            f" fell by more than {share:.0%} from one day to the next, up to {last}"
        )
    named = [
        f"{d.metric} fell {d.share:.0%} on {d.day}, from {d.before:,.2f} the day before to"
        f" {d.after:,.2f}"
        for d in drops[:NAMED]
    ]
    more = f"; and {len(drops) - NAMED:,} more (drops lists the steepest)" * (len(drops) > NAMED)
    return f"{workspace}: " + "; ".join(named) + more + f"; over the {share:.0%} allowed"


def _gaps_description(
    workspace: str, gaps: dict[str, MissingDays], scheduled: list[str], last: date
) -> str:
    if not gaps:
        checked = ", ".join(scheduled) or "none"
        return (
            f"{workspace}: every scheduled provider with data ({checked}) has a value on"
            f" every day since its first, up to {last}"
        )
    named = [
        f"{provider} has no value on {missing.count:,} day(s) since its first:"
        f" {_some([d.isoformat() for d in missing.first], missing.count)}"
        for provider, missing in gaps.items()
    ]
    return f"{workspace}: " + "; ".join(named)


def _summary(
    frame: "pd.DataFrame", rows: int, breakdowns: MartBreakdowns
) -> dict[str, dg.MetadataValue | int | str]:
    """Counts, the first `LISTED` metrics by name, the latest days of the first few, what
    the breakdowns hold and which were left out."""
    not_listed = max(len(frame.columns) - LISTED, 0)
    left_out = list(breakdowns.left_out.items())
    metadata: dict[str, dg.MetadataValue | int | str] = {
        "rows": rows,
        "metric_count": len(frame.columns),
        "metrics": dg.MetadataValue.json(list(frame.columns[:LISTED])),
        "metrics_not_listed": not_listed,
        "breakdown_metric_count": breakdowns.columns,
        "breakdown_values": breakdowns.points,
        "breakdowns_left_out": dg.MetadataValue.json(dict(left_out[:LISTED])),
        "breakdowns_left_out_count": len(left_out),
    }
    days = [*frame.index, *breakdowns.by_day]
    if days:
        metadata["first_day"] = min(days).isoformat()
        metadata["last_day"] = max(days).isoformat()
    if len(frame):
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
