"""The workspace partition sensor, evaluated against a real Dagster instance."""

import dagster as dg
import sqlalchemy as sa

from kpi_pipelines.automation.partitions import (
    build_partitions_sensor,
    provider_partitions,
    workspace_partitions,
)
from kpi_pipelines.resources import WarehouseResource
from kpi_pipelines.warehouse.control import (
    Connection,
    Workspace,
    add_connection,
    add_workspace,
    remove_workspace,
)
from kpi_pipelines_tests.canary import scanned_instance
from kpi_pipelines_tests.run_results import apply_partition_requests

PROVIDERS = ["stripe", "notion"]


def evaluate(instance: dg.DagsterInstance) -> dg.SensorResult | dg.SkipReason:
    context = dg.build_sensor_context(instance=instance)
    sensor = build_partitions_sensor(PROVIDERS)
    return sensor(context, warehouse=WarehouseResource())


def test_sensor_adds_partitions_and_names_those_without_a_workspace(
    warehouse, workspace_a, workspace_b
) -> None:
    with scanned_instance() as instance:
        result = evaluate(instance)
        assert isinstance(result, dg.SensorResult)
        [add] = result.dynamic_partitions_requests
        assert isinstance(add, dg.AddDynamicPartitionsRequest)
        assert add.partition_keys == ["ws-a", "ws-b"]
        apply_partition_requests(instance, result)

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
        apply_partition_requests(instance, result)
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


def test_a_providers_partitions_follow_its_connections(warehouse, workspace_a, workspace_b) -> None:
    """A provider's asset is partitioned by the workspaces connected to it: the sensor adds
    a connection's partition, and deletes it when the workspace has no connection to the
    provider any more."""
    stripe = provider_partitions("stripe").name
    with scanned_instance() as instance:
        apply_partition_requests(instance, evaluate(instance))  # the workspace partitions
        assert instance.get_dynamic_partitions(stripe) == []

        for workspace in ("ws-b", "ws-a"):
            add_connection(warehouse, Connection(workspace_id=workspace, provider="stripe"))
        add_connection(warehouse, Connection(workspace_id="ws-a", provider="stripe", name="eu"))
        result = evaluate(instance)
        assert [
            (type(r).__name__, r.partitions_def_name, r.partition_keys)
            for r in result.dynamic_partitions_requests
        ] == [("AddDynamicPartitionsRequest", stripe, ["ws-a", "ws-b"])]
        apply_partition_requests(instance, result)
        assert isinstance(evaluate(instance), dg.SkipReason)
        assert instance.get_dynamic_partitions(provider_partitions("notion").name) == []

        # one of ws-a's two connections goes: it is still connected; ws-b's only one goes
        with warehouse.control() as db:
            db.execute(
                sa.text(
                    "DELETE FROM connections WHERE provider = 'stripe'"
                    " AND (workspace_id, name) IN (('ws-a', 'eu'), ('ws-b', 'default'))"
                )
            )
        result = evaluate(instance)
        assert [
            (type(r).__name__, r.partition_keys) for r in result.dynamic_partitions_requests
        ] == [("DeleteDynamicPartitionsRequest", ["ws-b"])]
        apply_partition_requests(instance, result)
        assert instance.get_dynamic_partitions(stripe) == ["ws-a"]
        # the workspace itself keeps its partition (the mart's)
        assert instance.get_dynamic_partitions(workspace_partitions.name) == ["ws-a", "ws-b"]
