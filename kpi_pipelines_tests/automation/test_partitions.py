"""The workspace partition sensor, evaluated against a real Dagster instance."""

import dagster as dg

from kpi_pipelines.automation.partitions import workspace_partitions, workspace_partitions_sensor
from kpi_pipelines.resources import WarehouseResource
from kpi_pipelines.warehouse.control import Workspace, add_workspace, remove_workspace
from kpi_pipelines_tests.canary import scanned_instance


def evaluate(instance: dg.DagsterInstance) -> dg.SensorResult | dg.SkipReason:
    context = dg.build_sensor_context(instance=instance)
    return workspace_partitions_sensor(context, warehouse=WarehouseResource())


def apply(instance: dg.DagsterInstance, result: dg.SensorResult) -> None:
    for request in result.dynamic_partitions_requests or []:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)


def test_sensor_adds_partitions_and_names_those_without_a_workspace(
    warehouse, workspace_a, workspace_b
) -> None:
    with scanned_instance() as instance:
        result = evaluate(instance)
        assert isinstance(result, dg.SensorResult)
        [add] = result.dynamic_partitions_requests
        assert isinstance(add, dg.AddDynamicPartitionsRequest)
        assert add.partition_keys == ["ws-a", "ws-b"]
        apply(instance, result)

        assert isinstance(evaluate(instance), dg.SkipReason)

        # a workspace removed outside the CLI, a partition added in the UI: both kept, and
        # the tick says why their runs fail
        remove_workspace(warehouse, "ws-a")
        instance.add_dynamic_partitions(workspace_partitions.name, ["from-the-ui"])
        add_workspace(warehouse, Workspace(id="ws-c", name="C"))
        result = evaluate(instance)
        assert [type(r).__name__ for r in result.dynamic_partitions_requests] == [
            "AddDynamicPartitionsRequest"
        ]
        assert result.dynamic_partitions_requests[0].partition_keys == ["ws-c"]
        apply(instance, result)
        skipped = evaluate(instance)
        assert isinstance(skipped, dg.SkipReason)
        assert "no workspace for partition(s) from-the-ui, ws-a" in skipped.skip_message
        assert "kpi-pipelines workspace add" in skipped.skip_message
        assert sorted(instance.get_dynamic_partitions(workspace_partitions.name)) == [
            "from-the-ui",
            "ws-a",
            "ws-b",
            "ws-c",
        ]


def test_sensor_requests_are_applied_by_the_sensor_machinery(warehouse, workspace_a) -> None:
    """Run the sensor through Dagster's own tick evaluation, not by hand."""
    from kpi_pipelines.definitions import RESOURCES, defs

    with scanned_instance() as instance:
        sensor = defs.resolve_sensor_def("workspace_partitions_sensor")
        with dg.build_sensor_context(instance=instance, resources=RESOURCES) as context:
            data = sensor.evaluate_tick(context)
        assert [r.partition_keys for r in data.dynamic_partitions_requests] == [["ws-a"]]
