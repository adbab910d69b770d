"""Every provider's concurrency pool exists with its limit without a manual step: the pools
sensor, evaluated by Dagster's own tick machinery against a real instance, creates the
missing ones and never changes a limit an operator set."""

import dagster as dg

from kpi_pipelines.automation.pools import provider_pool_limits
from kpi_pipelines.definitions import RESOURCES, SPECS, defs
from kpi_pipelines_tests.canary import scanned_instance


def pool_limits(instance: dg.DagsterInstance) -> dict[str, int | None]:
    storage = instance.event_log_storage
    return {
        key: storage.get_concurrency_info(key).slot_count for key in storage.get_concurrency_keys()
    }


def tick(instance: dg.DagsterInstance) -> str | None:
    sensor = defs.resolve_sensor_def("provider_pools_sensor")
    with dg.build_sensor_context(instance=instance, resources=RESOURCES) as context:
        return sensor.evaluate_tick(context).skip_message


def test_every_provider_has_a_pool() -> None:
    limits = provider_pool_limits(SPECS)
    assert set(limits) == {spec.key for spec in SPECS}
    assert limits["google_analytics"] == 2 and limits["csv_upload"] == 4


def test_the_sensor_creates_missing_pools_and_keeps_an_operators_limit() -> None:
    with scanned_instance() as instance:
        instance.event_log_storage.set_concurrency_slots("stripe", 9)  # the operator's
        message = tick(instance)
        expected = provider_pool_limits(SPECS)
        assert pool_limits(instance) == {**expected, "stripe": 9}
        assert "created pools" in (message or "") and "'stripe'" not in (message or "")
        assert tick(instance) == f"all {len(expected)} pools exist"
