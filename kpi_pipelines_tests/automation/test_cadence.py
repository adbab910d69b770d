"""Provider schedules and freshness checks, evaluated by Dagster against a real instance."""

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import dagster as dg
from dagster._core.loader import LoadingContextForTest  # what the UI's GraphQL resolvers read with

from kpi_pipelines.assets.provider_asset import build_provider_asset
from kpi_pipelines.automation.cadence import (
    FRESH_FOR_EVERY_WORKSPACE,
    build_freshness_schedule,
    build_provider_schedule,
)
from kpi_pipelines.automation.partitions import (
    provider_partitions,
    workspace_range_tags,
)
from kpi_pipelines.definitions import build_definitions
from kpi_pipelines.integrations.shared.base_adapter import IntegrationAdapter
from kpi_pipelines.integrations.shared.spec import AuthKind, Cadence, ProviderSpec
from kpi_pipelines.models import KPIData, SyncResult
from kpi_pipelines.resources import WarehouseResource
from kpi_pipelines.warehouse.control import (
    Connection,
    add_connection,
    due_for_sync,
    list_connections,
    record_sync_outcome,
)
from kpi_pipelines_tests.canary import scanned_instance
from kpi_pipelines_tests.run_results import latest_check_records, tick_workspaces

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


PROBE_PARTITIONS = provider_partitions(PROBE.key)


@dg.asset(key=PROBE.asset_key, partitions_def=PROBE_PARTITIONS)
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


def test_schedule_fans_out_to_every_connected_workspace_in_grouped_runs(
    warehouse, workspace_a, workspace_b
) -> None:
    for ws in ("ws-a", "ws-b"):
        add_connection(warehouse, Connection(workspace_id=ws, provider="probe"))
    with scanned_instance() as instance:
        instance.add_dynamic_partitions(PROBE_PARTITIONS.name, ["ws-a", "ws-b"])
        data = evaluate(instance, NOW)
        assert tick_workspaces(instance, "probe", data.run_requests) == [["ws-a", "ws-b"]]
        later = evaluate(instance, NOW + CADENCE)
        assert {r.run_key for r in later.run_requests}.isdisjoint(
            {r.run_key for r in data.run_requests}
        )


def test_a_connection_the_partition_sensor_has_not_seen_waits_for_the_next_tick(
    warehouse, workspace_a, workspace_b
) -> None:
    """A connection made in SQL has no partition of the provider's asset until the partition
    sensor adds it: the tick says so and syncs the others."""
    for ws in ("ws-a", "ws-b"):
        add_connection(warehouse, Connection(workspace_id=ws, provider="probe"))
    with scanned_instance() as instance:
        data = evaluate(instance, NOW)
        assert not data.run_requests
        assert data.skip_message == "waiting for the partitions of ws-a, ws-b"
        instance.add_dynamic_partitions(PROBE_PARTITIONS.name, ["ws-b"])
        assert tick_workspaces(instance, "probe", evaluate(instance, NOW).run_requests) == [
            ["ws-b"]
        ]


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
        instance.add_dynamic_partitions(PROBE_PARTITIONS.name, ["ws-a", "ws-b"])
        data = evaluate(instance, NOW + 4 * CADENCE)
        assert [r.partition_key for r in data.run_requests] == ["ws-b"]
        data = evaluate(instance, NOW + 7 * CADENCE)
        # due again: retried in a run of its own (ws-b alone too, its only neighbour)
        assert sorted(r.partition_key for r in data.run_requests) == ["ws-a", "ws-b"]


def test_tick_with_only_backing_off_connections_says_why(warehouse, workspace_a) -> None:
    add_connection(warehouse, Connection(workspace_id="ws-a", provider="probe"))
    fail(warehouse, "ws-a", NOW, error="probe is unavailable after 6 attempts")
    with scanned_instance() as instance:
        instance.add_dynamic_partitions(PROBE_PARTITIONS.name, ["ws-a"])
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


def run_freshness_job(
    specs: list[ProviderSpec], instance: dg.DagsterInstance
) -> list[dg.AssetCheckEvaluation]:
    """The freshness job, built for `specs`, run on `instance`: its evaluations."""
    job, _ = build_freshness_schedule(specs)
    result = job.execute_in_process(instance=instance, resources={"warehouse": WarehouseResource()})
    assert result.success
    return result.get_asset_check_evaluations()


def test_freshness_check_names_the_stale_and_never_synced_workspaces(
    warehouse, workspace_a, workspace_b
) -> None:
    for ws in ("ws-a", "ws-b"):
        add_connection(warehouse, Connection(workspace_id=ws, provider="probe"))
    with warehouse.control() as db:
        [a] = list_connections(db, provider="probe", workspace_id="ws-a")
        [b] = list_connections(db, provider="probe", workspace_id="ws-b")
    now = datetime.now(UTC)
    with warehouse.tenant("ws-a", actor="test") as db:
        record_sync_outcome(db, a.id, success=True, error=None, cadence=CADENCE, now=now)
    with warehouse.tenant("ws-b", actor="test") as db:
        record_sync_outcome(db, b.id, success=False, error="HTTP 503", cadence=CADENCE, now=now)
    with scanned_instance() as instance:
        [evaluation] = run_freshness_job([PROBE], instance)
    assert evaluation.asset_key == PROBE.asset_key
    assert evaluation.check_name == FRESH_FOR_EVERY_WORKSPACE
    assert not evaluation.passed
    assert evaluation.metadata["stale"].value == {
        "ws-b/default": {"last_success": "never", "failures_since": 1}
    }
    assert evaluation.description == (
        "1 of 2 probe connection(s) not synced successfully in the last 12 hours:"
        " ws-b/default (never synced, 1 failure(s) since)"
    )


def test_a_manual_provider_has_no_freshness_check(warehouse, workspace_a) -> None:
    manual = dataclasses.replace(PROBE, cadence=None)
    checks = {key.name for key in build_provider_asset(manual).check_keys}
    assert FRESH_FOR_EVERY_WORKSPACE not in checks
    with scanned_instance() as instance:
        assert run_freshness_job([manual], instance) == []


class FreshProbeAdapter(IntegrationAdapter):
    """A scheduled provider whose sync writes one point, unless its API is `down` for the
    workspace."""

    provider: ClassVar[str] = "freshprobe"
    down: ClassVar[frozenset[str]] = frozenset()

    def check_connection(self) -> None:
        pass

    def sync(self) -> SyncResult:
        if self.context.workspace.id in self.down:
            raise ConnectionError("freshprobe's API answered 503")
        writer = self.point_writer()
        with writer.open():
            writer.add_all(self.transform(None))
        return SyncResult(
            success=True,
            records_processed=1,
            points_written=writer.stats.written,
            last_sync_at=datetime.now(UTC),
        )

    def transform(self, raw: Any) -> list[KPIData]:
        return [
            KPIData(
                value=1.0,
                timestamp=datetime(2026, 1, 1, tzinfo=UTC),
                source="freshprobe",
                workspace_id=self.context.workspace.id,
                metric="probes",
            )
        ]


FRESH_PROBE = dataclasses.replace(
    PROBE, key="freshprobe", display_name="Fresh probe", adapter=FreshProbeAdapter
)


def shown_in_the_ui(instance: dg.DagsterInstance, record) -> bool:  # type: ignore[no-untyped-def]
    """Whether the UI shows `record` as the check's latest result: what its checks list
    reads (GraphQL's executionForLatestMaterialization) asks this of the latest record."""
    return asyncio.run(record.targets_latest_materialization(LoadingContextForTest(instance)))


def test_a_manual_run_or_a_backfill_evaluates_freshness_instead_of_skipping_it(
    warehouse, workspace_a, workspace_b, monkeypatch
) -> None:
    """Run the provider's asset as the UI's Materialize button does (the implicit asset
    job, with every check of the asset selected) and as a backfill does (its job, over a
    range of workspaces): each run ends with a real evaluation of the freshness check, not
    one planned and left skipped, and the UI shows it, a failed run's too."""
    _, defs = build_definitions([FRESH_PROBE])
    for ws in ("ws-a", "ws-b"):
        add_connection(warehouse, Connection(workspace_id=ws, provider="freshprobe"))
    key = dg.AssetCheckKey(FRESH_PROBE.asset_key, FRESH_FOR_EVERY_WORKSPACE)
    asset_checks = {
        k for k in defs.resolve_asset_graph().asset_check_keys if k.asset_key == key.asset_key
    }
    assert key in asset_checks
    materialize = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={FRESH_PROBE.asset_key}, asset_check_selection=asset_checks
    )
    with scanned_instance() as instance:
        partitions = provider_partitions(FRESH_PROBE.key)
        instance.add_dynamic_partitions(partitions.name, ["ws-a", "ws-b"])

        def latest(run: dg.ExecuteInProcessResult) -> tuple[str, str]:
            [record] = latest_check_records(instance, key).values()
            assert record.run_id == run.run_id and shown_in_the_ui(instance, record)
            return record.status.value, record.evaluation.description

        manual = materialize.execute_in_process(instance=instance, partition_key="ws-b")
        assert manual.success
        assert latest(manual) == (
            "FAILED",
            "1 of 2 freshprobe connection(s) not synced successfully in the last 12 hours:"
            " ws-a/default (never synced)",
        )
        [tags] = workspace_range_tags(instance, ["ws-a", "ws-b"], partitions)
        backfill = defs.resolve_job_def(FRESH_PROBE.job_name).execute_in_process(
            instance=instance, tags=tags
        )
        assert backfill.success
        assert latest(backfill) == (
            "SUCCEEDED",
            "all 2 freshprobe connection(s) synced successfully in the last 12 hours",
        )
        # ws-a materialized last, then a manual run of ws-b whose sync fails: its
        # evaluation is still the one the UI shows
        assert materialize.execute_in_process(instance=instance, partition_key="ws-a").success
        monkeypatch.setattr(FreshProbeAdapter, "down", frozenset({"ws-b"}))
        failed = materialize.execute_in_process(
            instance=instance, partition_key="ws-b", raise_on_error=False
        )
        assert not failed.success
        assert latest(failed) == (
            "SUCCEEDED",
            "all 2 freshprobe connection(s) synced successfully in the last 12 hours",
        )


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
    assert set(evaluations) == {spec.asset_key.to_user_string() for spec in SPECS if spec.cadence}
    stripe = evaluations["stripe_kpis"]
    assert not stripe.passed
    assert stripe.metadata["stale"].value == {
        "ws-a/default": {"last_success": "never", "failures_since": 0}
    }
    assert result.get_asset_materialization_events() == []  # nothing was synced
    for spec in SPECS:
        [asset_spec] = defs.resolve_assets_def(spec.asset_key).specs
        if spec.cadence:
            assert asset_spec.freshness_policy == dg.FreshnessPolicy.time_window(
                fail_window=2 * spec.cadence.interval
            ), spec.key
        else:
            assert asset_spec.freshness_policy is None, spec.key
