"""Workspace partitions: one partition per tenant workspace. `kpi-pipelines workspace add`
and `remove` register and delete it at once; a sensor adds those of workspaces made
elsewhere and names partitions that have no workspace, without deleting them.

A run may cover a range of workspace partitions (Dagster's partition-range tags, as a
backfill sets them): the workspaces added between its first and its last, in the order they
were added. `workspace_groups` cuts any set of workspaces into such runs, of a given most
each; `workspace_range_tags` into the fewest.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import dagster as dg

from kpi_pipelines.resources import WarehouseResource
from kpi_pipelines.warehouse.control import WORKSPACE_ID, workspace_ids

workspace_partitions = dg.DynamicPartitionsDefinition(name="workspace")

# Dagster's tags for a run over a range of partitions (what its backfills set).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def workspace_groups(
    ordered: Sequence[str], wanted: Collection[str], most: int | None = None
) -> list[list[str]]:
    """`wanted` cut into runs' worth of workspace partitions: each group lies side by side
    in `ordered` (the partitions in the order they were added, so that a run's range
    holds exactly its group) and has at most `most` workspaces (None: no limit)."""
    wanted = set(wanted)
    groups: list[list[str]] = []
    previous_wanted = False
    for key in ordered:
        if key in wanted:
            if previous_wanted and (most is None or len(groups[-1]) < most):
                groups[-1].append(key)
            else:
                groups.append([key])
        previous_wanted = key in wanted
    return groups


def range_tags(group: Sequence[str]) -> dict[str, str]:
    """The tags of a run over the partition range from `group`'s first to its last."""
    return {RANGE_START_TAG: group[0], RANGE_END_TAG: group[-1]}


def workspace_range_tags(
    instance: dg.DagsterInstance, workspace_ids: Sequence[str]
) -> list[dict[str, str]]:
    """The tags of the runs that cover exactly `workspace_ids`: one run per stretch of
    them that lies side by side among the workspace partitions. Raises LookupError for a
    workspace that has no partition."""
    ordered = instance.get_dynamic_partitions(workspace_partitions.name)
    missing = set(workspace_ids) - set(ordered)
    if missing:
        raise LookupError(f"no workspace partition for {', '.join(sorted(missing))}")
    return [range_tags(group) for group in workspace_groups(ordered, workspace_ids)]


@dg.sensor(
    name="workspace_partitions_sensor",
    description=(
        "Adds a partition for every workspace made outside `kpi-pipelines workspace add`;"
        " names, and keeps, partitions that have no workspace (added in the UI, or whose"
        " workspace was removed outside `kpi-pipelines workspace remove`)."
    ),
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def workspace_partitions_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.SensorResult | dg.SkipReason:
    wanted = set(workspace_ids(warehouse.get()))
    existing = set(context.instance.get_dynamic_partitions(workspace_partitions.name))
    added, orphans = sorted(wanted - existing), sorted(existing - wanted)
    # A partition is never deleted here: one added in the UI is the operator's, and
    # deleting it behind their back (30 s later) is worse than saying why its runs fail.
    orphaned = (
        f"; no workspace for partition(s) {', '.join(orphans)}: their runs fail until"
        " `kpi-pipelines workspace add <id>` makes the workspace (or delete the partition)"
        if orphans
        else ""
    )
    if orphans:
        context.log.warning(f"workspace partitions{orphaned}")
    if not added:
        return dg.SkipReason(f"{len(wanted)} workspace partition(s) in step{orphaned}")
    context.log.info(f"workspace partitions: added {added}")
    return dg.SensorResult(
        dynamic_partitions_requests=[workspace_partitions.build_add_request(added)]
    )


def no_workspace(partition: str) -> str:
    """Why a run of a workspace partition that has no workspace fails (a partition added
    with "Add partition" in the UI, or left by a workspace removed in SQL), with the command
    that fixes it."""
    if not WORKSPACE_ID.match(partition):
        return (
            f"partition {partition[:100]!r} is not a workspace id (lowercase letters and"
            " digits, words joined by single '-' or '_', like 'acme-eu'): delete it in the UI"
            " and add the workspace with `kpi-pipelines workspace add <id> --currency USD"
            " --timezone UTC`"
        )
    return (
        f"workspace {partition!r} does not exist (its partition was added in the UI, or the"
        " workspace was removed outside the CLI): create it with `kpi-pipelines workspace add"
        f" {partition} --currency USD --timezone UTC` (its reporting currency and time zone)"
        f" and connect it (`kpi-pipelines connection add {partition} <provider> ...`), then"
        " run this again"
    )


def register_partition(instance: dg.DagsterInstance, workspace_id: str) -> bool:
    """Give a new workspace its partition at once (the sensor is for changes made
    elsewhere); False when it already had one."""
    if instance.has_dynamic_partition(workspace_partitions.name, workspace_id):
        return False
    instance.add_dynamic_partitions(workspace_partitions.name, [workspace_id])
    return True


def unregister_partition(instance: dg.DagsterInstance, workspace_id: str) -> bool:
    """Delete a removed workspace's partition (its runs' history stays in Dagster)."""
    if not instance.has_dynamic_partition(workspace_partitions.name, workspace_id):
        return False
    instance.delete_dynamic_partition(workspace_partitions.name, workspace_id)
    return True
