"""Workspace partitions: one partition per tenant workspace, kept in step by a sensor."""

from __future__ import annotations

import dagster as dg

from kpi_pipelines.resources import WarehouseResource
from kpi_pipelines.warehouse.control import workspace_ids

workspace_partitions = dg.DynamicPartitionsDefinition(name="workspace")


@dg.sensor(
    name="workspace_partitions_sensor",
    description="Adds a partition for every new workspace and removes those of deleted ones.",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def workspace_partitions_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.SensorResult | dg.SkipReason:
    wanted = set(workspace_ids(warehouse.get()))
    existing = set(context.instance.get_dynamic_partitions(workspace_partitions.name))
    added, removed = sorted(wanted - existing), sorted(existing - wanted)
    if not added and not removed:
        return dg.SkipReason(f"{len(wanted)} workspace partition(s), all in step")
    requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
    if added:
        requests.append(workspace_partitions.build_add_request(added))
    if removed:
        requests.append(workspace_partitions.build_delete_request(removed))
    context.log.info(f"workspace partitions: added {added}, removed {removed}")
    return dg.SensorResult(dynamic_partitions_requests=requests)
