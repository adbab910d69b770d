"""Reading what a Dagster run reported: its failure message, its materialization metadata,
and everything it left in the instance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from kpi_pipelines.automation.partitions import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    provider_partitions,
)


def apply_partition_requests(
    instance: dg.DagsterInstance, result: dg.SensorResult | dg.SkipReason
) -> None:
    """What the sensor daemon does with a tick's partition requests: add and delete them."""
    if not isinstance(result, dg.SensorResult):
        return
    for request in result.dynamic_partitions_requests or []:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    """The message a person sees in the UI for the run's failed step."""
    [event] = [e for e in result.all_events if e.is_step_failure]
    data = event.step_failure_data
    return (data.user_failure_data.description if data.user_failure_data else "") or (
        data.error.message if data.error else ""
    )


def metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    """The metadata of the run's one materialization, as plain values."""
    [event] = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def everything_the_run_left(instance: dg.DagsterInstance, run_id: str) -> str:
    """The run's event log (messages, errors with their causes, metadata) and compute logs."""
    texts = [repr(record) for record in instance.all_logs(run_id)]
    captured = Path(instance.root_directory) / "storage" / run_id / "compute_logs"
    texts += [f.read_text(errors="replace") for f in captured.glob("*") if f.is_file()]
    return "\n".join(texts)


def latest_check_records(
    instance: dg.DagsterInstance, check_key: dg.AssetCheckKey, limit: int = 100
) -> dict[str | None, Any]:
    """The latest execution record of a check per partition (None: unpartitioned), read
    back from the instance's event log, among its `limit` latest executions."""
    latest: dict[str | None, Any] = {}
    for record in instance.event_log_storage.get_asset_check_execution_history(
        check_key, limit=limit
    ):
        latest.setdefault(record.partition, record)  # newest first
    return latest


def requested_workspaces(
    instance: dg.DagsterInstance, provider: str, partition_key: str | None, tags: Mapping[str, str]
) -> list[str]:
    """The workspaces a run (or a run request) of `provider`'s asset covers: its partition,
    or every partition of its range as the instance has them now."""
    if partition_key:
        return [partition_key]
    start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    if not start or not end:
        return []
    ordered = instance.get_dynamic_partitions(provider_partitions(provider).name)
    if start not in ordered or end not in ordered:
        return []
    return list(ordered[ordered.index(start) : ordered.index(end) + 1])


def tick_workspaces(
    instance: dg.DagsterInstance, provider: str, requests: Sequence[dg.RunRequest] | None
) -> list[list[str]]:
    """The workspaces each of a tick's run requests syncs (a partition, or a range's)."""
    return [
        requested_workspaces(instance, provider, r.partition_key, r.tags) for r in requests or []
    ]


def ticked_workspaces(
    instance: dg.DagsterInstance, provider: str, requests: Sequence[dg.RunRequest] | None
) -> list[str]:
    """Every workspace a tick's runs of `provider` sync, in order."""
    return [w for run in tick_workspaces(instance, provider, requests) for w in run]
