"""Workspace partitions: one per tenant workspace (the KPI mart's), and one per workspace
connected to a provider (that provider's asset's, `provider_partitions`).

`kpi-pipelines workspace add` and `remove` register and delete a workspace's partition at
once, and `connection add` its provider's; a sensor follows changes made elsewhere: it adds
the partitions of new workspaces and connections, names workspace partitions that have no
workspace (without deleting them), and deletes a provider's partitions whose workspace has
no connection to it any more (their history stays).

A run may cover a range of partitions (Dagster's partition-range tags, as a backfill sets
them): the partitions added between its first and its last, in the order they were added.
A provider's set holds only its connected workspaces, so a tick's workspaces lie side by
side and its runs are full whatever share of the workspaces uses the provider.
`workspace_groups` cuts any set of workspaces into such runs, of a given most each;
`workspace_range_tags` into the fewest.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from functools import cache

import dagster as dg

from kpi_pipelines.resources import WarehouseResource
from kpi_pipelines.warehouse.control import WORKSPACE_ID, list_connections, workspace_ids

workspace_partitions = dg.DynamicPartitionsDefinition(name="workspace")

# Dagster's tags for a run over a range of partitions (what its backfills set).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


@cache
def provider_partitions(provider: str) -> dg.DynamicPartitionsDefinition:
    """The partitions of `provider`'s asset: the workspaces with a connection to it."""
    return dg.DynamicPartitionsDefinition(name=f"{provider}_workspaces")


def workspace_groups(
    ordered: Sequence[str], wanted: Collection[str], most: int | None = None
) -> list[list[str]]:
    """`wanted` cut into runs' worth of partitions: each group lies side by side in
    `ordered` (the partitions in the order they were added, so that a run's range holds
    exactly its group) and has at most `most` workspaces (None: no limit)."""
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
    instance: dg.DagsterInstance,
    workspace_ids: Sequence[str],
    partitions: dg.DynamicPartitionsDefinition = workspace_partitions,
) -> list[dict[str, str]]:
    """The tags of the runs that cover exactly `workspace_ids`: one run per stretch of
    them that lies side by side among `partitions`. Raises LookupError for a workspace that
    has no partition there."""
    ordered = instance.get_dynamic_partitions(partitions.name)
    missing = set(workspace_ids) - set(ordered)
    if missing:
        raise LookupError(f"no {partitions.name} partition for {', '.join(sorted(missing))}")
    return [range_tags(group) for group in workspace_groups(ordered, workspace_ids)]


def lacking(
    instance: dg.DagsterInstance,
    partitions: dg.DynamicPartitionsDefinition,
    workspace_ids: Iterable[str],
) -> list[str]:
    """Those of `workspace_ids` that have no partition in `partitions` (one read)."""
    known = set(instance.get_dynamic_partitions(partitions.name))
    return [w for w in dict.fromkeys(workspace_ids) if w not in known]


def missing_partitions(
    instance: dg.DagsterInstance,
    partitions: dg.DynamicPartitionsDefinition,
    workspace_ids: Iterable[str],
) -> list[dg.AddDynamicPartitionsRequest]:
    """The request (none, or one) that adds those of `workspace_ids` that `partitions`
    lacks, for a sensor's result: a sensor's runs can then target them in the same tick."""
    new = lacking(instance, partitions, workspace_ids)
    return [partitions.build_add_request(new)] if new else []


def build_partitions_sensor(providers: Sequence[str]) -> dg.SensorDefinition:
    """The sensor that keeps the workspace partitions and `providers`' partitions in step
    with the workspaces and connections."""

    @dg.sensor(
        name="workspace_partitions_sensor",
        description=(
            "Adds a partition for every workspace and every provider connection made outside"
            " the CLI; names, and keeps, workspace partitions that have no workspace (added in"
            " the UI, or whose workspace was removed outside `kpi-pipelines workspace"
            " remove`); deletes a provider's partitions whose workspace has no connection to"
            " it any more."
        ),
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def workspace_partitions_sensor(
        context: dg.SensorEvaluationContext, warehouse: WarehouseResource
    ) -> dg.SensorResult | dg.SkipReason:
        instance = context.instance
        # Partitions first, connections second: a connection and its partition are added in
        # that order, so a partition read here always has its connection read below.
        existing = set(instance.get_dynamic_partitions(workspace_partitions.name))
        per_provider = {
            p: set(instance.get_dynamic_partitions(provider_partitions(p).name)) for p in providers
        }
        wanted = set(workspace_ids(warehouse.get()))
        with warehouse.get().control() as db:
            connected: dict[str, set[str]] = {p: set() for p in providers}
            for connection in list_connections(db):
                connected.setdefault(connection.provider, set()).add(connection.workspace_id)
        requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
        changes: list[str] = []
        added, orphans = sorted(wanted - existing), sorted(existing - wanted)
        if added:
            requests.append(workspace_partitions.build_add_request(added))
            changes.append(f"added workspace partition(s) {', '.join(added)}")
        for provider in providers:
            partitions, have = provider_partitions(provider), per_provider[provider]
            new = sorted(connected[provider] - have)
            gone = sorted(have - connected[provider])
            if new:
                requests.append(partitions.build_add_request(new))
                changes.append(f"added {partitions.name} partition(s) {', '.join(new)}")
            if gone:
                requests.append(partitions.build_delete_request(gone))
                changes.append(
                    f"deleted {partitions.name} partition(s) {', '.join(gone)} (no {provider}"
                    " connection any more; their history stays)"
                )
        # A workspace partition is never deleted here: one added in the UI is the operator's,
        # and deleting it behind their back (30 s later) is worse than saying why its runs
        # fail.
        orphaned = (
            f"; no workspace for partition(s) {', '.join(orphans)}: their runs fail until"
            " `kpi-pipelines workspace add <id>` makes the workspace (or delete the partition)"
            if orphans
            else ""
        )
        if orphans:
            context.log.warning(f"workspace partitions{orphaned}")
        if not requests:
            return dg.SkipReason(f"{len(wanted)} workspace partition(s) in step{orphaned}")
        context.log.info(f"workspace partitions: {'; '.join(changes)}")
        return dg.SensorResult(dynamic_partitions_requests=requests)

    return workspace_partitions_sensor


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


def register_partition(instance: dg.DagsterInstance, workspace_id: str, *providers: str) -> bool:
    """Give a new workspace its partition at once, and its partition of each of
    `providers`' assets (for its connections to them; the sensor is for changes made
    elsewhere); False when it had them all already."""
    added = False
    for partitions in (workspace_partitions, *map(provider_partitions, providers)):
        if not instance.has_dynamic_partition(partitions.name, workspace_id):
            instance.add_dynamic_partitions(partitions.name, [workspace_id])
            added = True
    return added


def unregister_partition(
    instance: dg.DagsterInstance, workspace_id: str, providers: Iterable[str] = ()
) -> bool:
    """Delete a removed workspace's partition and its partitions of `providers`' assets (its
    runs' history stays in Dagster)."""
    deleted = False
    for partitions in (workspace_partitions, *map(provider_partitions, providers)):
        if instance.has_dynamic_partition(partitions.name, workspace_id):
            instance.delete_dynamic_partition(partitions.name, workspace_id)
            deleted = True
    return deleted
