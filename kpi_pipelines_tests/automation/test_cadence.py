"""Provider schedules and freshness checks, evaluated by Dagster against a real instance."""

import dataclasses
from datetime import UTC, datetime, timedelta

import dagster as dg

from kpi_pipelines.automation.cadence import build_freshness_check, build_provider_schedule
from kpi_pipelines.automation.partitions import workspace_partitions
from kpi_pipelines.integrations.shared.base_adapter import IntegrationAdapter
from kpi_pipelines.integrations.shared.spec import AuthKind, Cadence, ProviderSpec
from kpi_pipelines.resources import WarehouseResource
from kpi_pipelines.warehouse.control import (
    Connection,
    add_connection,
    due_for_sync,
    list_connections,
    record_sync_outcome,
)
from kpi_pipelines_tests.canary import scanned_instance

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
CADENCE = timedelta(hours=6)
# A provider declared for the schedule and the checks alone (its adapter never runs here).
PROBE = ProviderSpec(
    key="probe",
    display_name="Probe",
    description="Stands in for a scheduled provider.",
    adapter=IntegrationAdapter,
    auth=AuthKind.NONE,
    group="tests",
    kinds=frozenset(),
    metrics=("probes",),
    cadence=Cadence.every_hours(6),
)


@dg.asset(key=PROBE.asset_key, partitions_def=workspace_partitions)
def probe_kpis(config: dg.PermissiveConfig) -> None:
    """Stands in for a scheduled provider's asset; only its partitions matter here."""


probe_job = dg.define_asset_job("probe_job", selection=[probe_kpis])
assert PROBE.cadence is not None and PROBE.cadence.interval == CADENCE
probe_schedule = build_provider_schedule(PROBE, PROBE.cadence, probe_job)
defs = dg.Definitions(
    assets=[probe_kpis],
    jobs=[probe_job],
    schedules=[probe_schedule],
    resources={"warehouse": WarehouseResource()},
)


def evaluate(instance: dg.DagsterInstance, at: datetime):
    schedule = defs.resolve_schedule_def("probe_schedule")
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=at,
        resources={"warehouse": WarehouseResource()},
        repository_def=defs.get_repository_def(),
    ) as context:
        return schedule.evaluate_tick(context)


def fail(
    warehouse, workspace_id: str, at: datetime, error: str = "HTTP 503 from probe"
) -> Connection:
    with warehouse.control() as db:
        [connection] = list_connections(db, provider="probe", workspace_id=workspace_id)
    with warehouse.tenant(workspace_id, actor="test") as db:
        return record_sync_outcome(
            db, connection.id, success=False, error=error, cadence=CADENCE, now=at
        )


def test_schedule_fans_out_one_run_per_connected_workspace(
    warehouse, workspace_a, workspace_b
) -> None:
    for ws in ("ws-a", "ws-b"):
        add_connection(warehouse, Connection(workspace_id=ws, provider="probe"))
    with scanned_instance() as instance:
        instance.add_dynamic_partitions("workspace", ["ws-a", "ws-b"])
        data = evaluate(instance, NOW)
        assert sorted(r.partition_key for r in data.run_requests) == ["ws-a", "ws-b"]
        assert len({r.run_key for r in data.run_requests}) == 2
        later = evaluate(instance, NOW + CADENCE)
        assert {r.run_key for r in later.run_requests}.isdisjoint(
            {r.run_key for r in data.run_requests}
        )


def test_failing_connection_is_retried_less_often_with_its_reason(
    warehouse, workspace_a, workspace_b
) -> None:
    for ws in ("ws-a", "ws-b"):
        add_connection(warehouse, Connection(workspace_id=ws, provider="probe"))
    first = fail(warehouse, "ws-a", NOW)
    second = fail(warehouse, "ws-a", NOW + CADENCE)
    third = fail(warehouse, "ws-a", NOW + 3 * CADENCE)
    assert first.next_attempt_at - NOW == CADENCE
    assert second.next_attempt_at - (NOW + CADENCE) == 2 * CADENCE
    assert third.next_attempt_at - (NOW + 3 * CADENCE) == 4 * CADENCE
    assert third.consecutive_failures == 3 and third.last_error == "HTTP 503 from probe"
    with scanned_instance() as instance:
        instance.add_dynamic_partitions("workspace", ["ws-a", "ws-b"])
        data = evaluate(instance, NOW + 4 * CADENCE)
        assert [r.partition_key for r in data.run_requests] == ["ws-b"]
        data = evaluate(instance, NOW + 7 * CADENCE)
        assert sorted(r.partition_key for r in data.run_requests) == ["ws-a", "ws-b"]


def test_tick_with_only_backing_off_connections_says_why(warehouse, workspace_a) -> None:
    add_connection(warehouse, Connection(workspace_id="ws-a", provider="probe"))
    fail(warehouse, "ws-a", NOW, error="probe is unavailable after 6 attempts")
    with scanned_instance() as instance:
        instance.add_dynamic_partitions("workspace", ["ws-a"])
        data = evaluate(instance, NOW + timedelta(minutes=5))
        assert not data.run_requests
        assert "ws-a/default: 1 failure(s)" in data.skip_message
        assert "unavailable after 6 attempts" in data.skip_message


def test_success_resets_the_backoff(warehouse, workspace_a) -> None:
    add_connection(warehouse, Connection(workspace_id="ws-a", provider="probe"))
    failed = fail(warehouse, "ws-a", NOW)
    assert not due_for_sync(failed, NOW)
    with warehouse.tenant("ws-a", actor="test") as db:
        ok = record_sync_outcome(db, failed.id, success=True, error=None, cadence=CADENCE, now=NOW)
    assert ok.consecutive_failures == 0 and ok.last_error is None and due_for_sync(ok, NOW)


def test_backoff_is_capped_at_a_day(warehouse, workspace_a) -> None:
    add_connection(warehouse, Connection(workspace_id="ws-a", provider="probe"))
    for _ in range(8):
        connection = fail(warehouse, "ws-a", NOW)
    assert connection.next_attempt_at - NOW == timedelta(days=1)


def run_check(
    check: dg.AssetChecksDefinition, instance: dg.DagsterInstance
) -> dg.AssetCheckEvaluation:
    result = dg.materialize(
        [probe_kpis, check],
        selection=dg.AssetSelection.checks(check),
        instance=instance,
        resources={"warehouse": WarehouseResource()},
    )
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def test_freshness_check_flags_stale_and_never_synced_workspaces(
    warehouse, workspace_a, workspace_b
) -> None:
    for ws in ("ws-a", "ws-b"):
        add_connection(warehouse, Connection(workspace_id=ws, provider="probe"))
    with warehouse.control() as db:
        [a] = list_connections(db, provider="probe", workspace_id="ws-a")
    with warehouse.tenant("ws-a", actor="test") as db:
        record_sync_outcome(
            db, a.id, success=True, error=None, cadence=CADENCE, now=datetime.now(UTC)
        )
    check = build_freshness_check(PROBE)
    with scanned_instance() as instance:
        evaluation = run_check(check, instance)
    assert not evaluation.passed
    assert evaluation.metadata["stale"].value == {"ws-b/default": "never"}


def test_freshness_check_of_a_manual_source_always_passes(warehouse, workspace_a) -> None:
    check = build_freshness_check(dataclasses.replace(PROBE, cadence=None))
    with scanned_instance() as instance:
        evaluation = run_check(check, instance)
    assert evaluation.passed and evaluation.metadata["cadence"].value == "manual"


def test_freshness_is_evaluated_on_its_own_schedule_without_a_sync(warehouse, workspace_a) -> None:
    """The freshness checks have a job and a schedule of their own: a provider whose syncs
    all fail still gets its check evaluated (and red) every 15 minutes, and Dagster's own
    freshness policy on each scheduled asset makes it stale after twice its cadence."""
    from kpi_pipelines.definitions import RESOURCES, SPECS, defs

    add_connection(warehouse, Connection(workspace_id="ws-a", provider="stripe"))
    schedule = defs.resolve_schedule_def("freshness_checks_schedule")
    assert schedule.cron_schedule == "*/15 * * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    with scanned_instance() as instance:
        with dg.build_schedule_context(instance=instance) as context:
            [request] = schedule.evaluate_tick(context).run_requests
        job = defs.resolve_job_def(schedule.job_name)
        result = job.execute_in_process(instance=instance, resources=RESOURCES, tags=request.tags)
    assert result.success
    evaluations = {e.asset_key.to_user_string(): e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {spec.asset_key.to_user_string() for spec in SPECS}
    stripe = evaluations["stripe_kpis"]
    assert not stripe.passed and stripe.metadata["stale"].value == {"ws-a/default": "never"}
    assert result.get_asset_materialization_events() == []  # nothing was synced
    for spec in SPECS:
        [asset_spec] = defs.resolve_assets_def(spec.asset_key).specs
        if spec.cadence:
            assert asset_spec.freshness_policy == dg.FreshnessPolicy.time_window(
                fail_window=2 * spec.cadence.interval
            ), spec.key
        else:
            assert asset_spec.freshness_policy is None, spec.key
