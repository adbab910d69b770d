"""Runs that sync several workspaces: one Dagster run over a range of workspace partitions,
each workspace in its own transactions, with its own health, metadata and failure.

A probe provider built from the kit does what each workspace's connection says (sync, crash
half-way, reject a record, hold memory), so every way a workspace can end is shown in one
run, through Dagster's own partition-range machinery."""

from __future__ import annotations

import dataclasses
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import dagster as dg
import pytest

from kpi_pipelines.assets.provider_asset import (
    NO_MISSING_VALUES,
    NO_REJECTED_RECORDS,
    build_provider_asset,
)
from kpi_pipelines.assets.workspace_sync import connection_sync_lock
from kpi_pipelines.automation.partitions import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    provider_partitions,
    workspace_partitions,
    workspace_range_tags,
)
from kpi_pipelines.automation.pools import CONNECTION_TAG, WORKSPACES_TAG
from kpi_pipelines.definitions import provider_definitions, resources
from kpi_pipelines.demo import materialize_provider, materialize_workspaces
from kpi_pipelines.integrations.shared.base_adapter import IntegrationAdapter
from kpi_pipelines.integrations.shared.secrets import read_secret
from kpi_pipelines.integrations.shared.spec import AuthKind, Cadence, ProviderSpec
from kpi_pipelines.models import KPIData, SyncResult
from kpi_pipelines.resources import WarehouseResource
from kpi_pipelines.warehouse.control import (
    Connection,
    Workspace,
    add_connection,
    add_workspace,
    get_connection,
    secret_namespace,
)
from kpi_pipelines.warehouse.tenant_data import read_points
from kpi_pipelines_tests.run_results import (
    everything_the_run_left,
    failure_message,
    tick_workspaces,
)

SECRET = "ranged-canary-4d1e8b2a6c"  # no known secret shape: only registration redacts it
POINTS = 30
BATCH = 10
HUNGRY_BYTES = 200 * 1024 * 1024


class RangeProbeAdapter(IntegrationAdapter):
    """Writes POINTS points in batches of BATCH, each batch its own transaction, then does
    what its connection's `behaviour` says."""

    provider: ClassVar[str] = "rangeprobe"

    def check_connection(self) -> None:
        read_secret(self.context.connection, "api_key")

    def sync(self) -> SyncResult:
        key = read_secret(self.context.connection, "api_key")
        behaviour = self.context.connection.settings["behaviour"]
        self.context.log.info(f"rangeprobe: syncing with {key}")
        held = bytearray(HUNGRY_BYTES) if behaviour == "hungry" else None
        writer = self.point_writer()
        with writer.open():
            for day in range(POINTS):
                writer.add_all(self.transform(day))
                if behaviour == "crash" and day == BATCH + 2:  # after one whole batch
                    raise RuntimeError(f"the client library choked on its key {key!r}")
        del held
        rejected = behaviour == "reject"
        return SyncResult(
            success=not rejected,
            records_processed=POINTS + rejected,
            records_rejected=int(rejected),
            points_written=writer.stats.written,
            errors=["items it_9: amount: not a number"] if rejected else [],
            last_sync_at=datetime.now(UTC),
        )

    def transform(self, raw: int) -> list[KPIData]:
        return [
            KPIData(
                value=float(raw),
                timestamp=datetime(2026, 1, 1 + raw, tzinfo=UTC),
                source="rangeprobe",
                workspace_id=self.context.workspace.id,
                metric="probes",
            )
        ]


SPEC = ProviderSpec(
    key="rangeprobe",
    display_name="Range probe",
    description="A probe provider for runs over several workspaces.",
    adapter=RangeProbeAdapter,
    auth=AuthKind.API_KEY,
    group="tests",
    kinds=frozenset({"python"}),
    metrics=("probes",),
    workspaces_per_run=10,
)
RANGEPROBE_PARTITIONS = provider_partitions(SPEC.key)
rangeprobe_kpis = build_provider_asset(SPEC)


@pytest.fixture
def workspaces(warehouse, dagster_instance, monkeypatch):
    """Add workspaces with a rangeprobe connection behaving as named (None: no connection),
    in partition order."""

    def add(**behaviours: str | None) -> list[str]:
        ids, connected = [], []
        for name, behaviour in behaviours.items():
            workspace_id = name.replace("_", "-")
            add_workspace(warehouse, Workspace(id=workspace_id, name=workspace_id))
            if behaviour is not None:
                variable = f"{secret_namespace(workspace_id)}PROBE_KEY"
                monkeypatch.setenv(variable, SECRET)
                add_connection(
                    warehouse,
                    Connection(
                        workspace_id=workspace_id,
                        provider="rangeprobe",
                        settings={"behaviour": behaviour},
                        secret_env={"api_key": variable},
                    ),
                )
                connected.append(workspace_id)
            ids.append(workspace_id)
        # as `workspace add` and `connection add` register them; the module's earlier
        # tests' connections are gone, and so are their partitions (the sensor deletes them)
        dagster_instance.add_dynamic_partitions(workspace_partitions.name, ids)
        for stale in dagster_instance.get_dynamic_partitions(RANGEPROBE_PARTITIONS.name):
            dagster_instance.delete_dynamic_partition(RANGEPROBE_PARTITIONS.name, stale)
        dagster_instance.add_dynamic_partitions(RANGEPROBE_PARTITIONS.name, connected)
        return ids

    return add


def run_over(instance: dg.DagsterInstance, workspace_ids: list[str]) -> dg.ExecuteInProcessResult:
    """One run over `workspace_ids`, launched as a backfill launches it (range tags)."""
    [result] = materialize_workspaces(
        WarehouseResource().get(),
        instance,
        SPEC,
        workspace_ids,
        adapter=RangeProbeAdapter(batch_size=BATCH),
    )
    return result


def materialized(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    return {
        event.partition: {k: v.value for k, v in event.materialization.metadata.items()}
        for event in result.get_asset_materialization_events()
    }


def health(warehouse, workspace_id: str) -> Connection:
    with warehouse.control() as db:
        return get_connection(db, workspace_id, "rangeprobe")


def stored(warehouse, workspace_id: str) -> int:
    return len(read_points(warehouse, workspace_id, source="rangeprobe"))


def test_one_workspace_failing_leaves_the_others_synced_and_materialized(
    warehouse, dagster_instance, workspaces
) -> None:
    ids = workspaces(ws_a="ok", ws_b="crash", ws_c="reject")
    result = run_over(dagster_instance, ids)

    # The run fails, naming the workspace that failed and why (redacted) ...
    assert not result.success
    message = failure_message(result)
    assert message.startswith("rangeprobe: 1 of 3 workspaces failed (2 synced and materialized)")
    assert "ws-b: rangeprobe failed unexpectedly: RuntimeError" in message
    assert SECRET not in everything_the_run_left(dagster_instance, result.run_id)

    # ... the two others are materialized, each with its own metadata ...
    metadata = materialized(result)
    assert metadata.keys() == {"ws-a", "ws-c"}
    assert metadata["ws-a"]["success"] is True and metadata["ws-a"]["points_written"] == POINTS
    assert metadata["ws-c"]["records_rejected"] == 1
    assert metadata["ws-c"]["errors"] == ["items it_9: amount: not a number"]
    assert all(m["peak_memory_mb"] > 0 for m in metadata.values())

    # ... their rows are stored, and the failed workspace keeps its committed batch only.
    assert stored(warehouse, "ws-a") == stored(warehouse, "ws-c") == POINTS
    assert stored(warehouse, "ws-b") == BATCH

    # Each connection's health is its own.
    assert health(warehouse, "ws-b").consecutive_failures == 1
    assert "RuntimeError" in (health(warehouse, "ws-b").last_error or "")
    for ok in ("ws-a", "ws-c"):
        connection = health(warehouse, ok)
        assert connection.consecutive_failures == 0 and connection.last_success_at is not None

    # Dagster shows each partition as it ended.
    status = dagster_instance.get_status_by_partition(
        rangeprobe_kpis.key, ids, RANGEPROBE_PARTITIONS
    )
    assert {key: value.value for key, value in status.items()} == {
        "ws-a": "MATERIALIZED",
        "ws-b": "FAILED",
        "ws-c": "MATERIALIZED",
    }

    # The checks cover the workspaces that synced, and say which one had rejections.
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks[NO_MISSING_VALUES].passed
    assert checks[NO_MISSING_VALUES].metadata["workspaces_checked"].value == 2
    assert not checks[NO_REJECTED_RECORDS].passed
    assert checks[NO_REJECTED_RECORDS].metadata["failing_workspaces"].value == ["ws-c"]
    assert checks[NO_REJECTED_RECORDS].metadata["errors"].value == [
        "ws-c: items it_9: amount: not a number"
    ]


def test_log_lines_say_which_workspace_they_are_about(
    warehouse, dagster_instance, workspaces
) -> None:
    ids = workspaces(ws_a="ok", ws_b="ok")
    result = run_over(dagster_instance, ids)
    assert result.success
    left = everything_the_run_left(dagster_instance, result.run_id)
    assert "ws-a: rangeprobe: syncing with [REDACTED]" in left
    assert "ws-b: rangeprobe: syncing with [REDACTED]" in left
    assert SECRET not in left


def test_workspaces_without_a_connection_are_passed_over(
    warehouse, dagster_instance, workspaces
) -> None:
    ids = workspaces(ws_a="ok", ws_b=None, ws_c="ok")
    result = run_over(dagster_instance, ids)
    assert result.success
    assert materialized(result).keys() == {"ws-a", "ws-c"}
    left = everything_the_run_left(dagster_instance, result.run_id)
    assert "ws-b: passed over" in left and "no rangeprobe connection" in left


def test_a_single_workspace_without_a_connection_fails_its_run(
    warehouse, dagster_instance, workspaces
) -> None:
    [workspace_id] = workspaces(ws_a=None)
    result = materialize_provider(warehouse, dagster_instance, SPEC, workspace_id)
    assert not result.success
    assert "no rangeprobe connection" in failure_message(result)


def test_peak_memory_is_each_syncs_own(warehouse, dagster_instance, workspaces) -> None:
    ids = workspaces(ws_a="hungry", ws_b="ok")
    result = run_over(dagster_instance, ids)
    assert result.success, failure_message(result)
    metadata = materialized(result)
    hungry, after = metadata["ws-a"], metadata["ws-b"]
    held_mb = HUNGRY_BYTES / 1024 / 1024
    assert hungry["memory_growth_mb"] >= 0.9 * held_mb
    # The sync after it starts from its own baseline, not from the process's peak so far.
    assert after["memory_growth_mb"] < 0.25 * held_mb
    assert after["peak_memory_mb"] < hungry["peak_memory_mb"] - 0.5 * held_mb


def test_workspaces_apart_in_the_partition_list_take_one_run_per_stretch(
    warehouse, dagster_instance, workspaces
) -> None:
    workspaces(ws_a="ok", ws_b="ok", ws_c="ok", ws_d="ok")
    tags = workspace_range_tags(dagster_instance, ["ws-d", "ws-a", "ws-b"])
    assert tags == [
        {RANGE_START_TAG: "ws-a", RANGE_END_TAG: "ws-b"},
        {RANGE_START_TAG: "ws-d", RANGE_END_TAG: "ws-d"},
    ]
    with pytest.raises(LookupError, match="ws-z"):
        workspace_range_tags(dagster_instance, ["ws-a", "ws-z"])


def test_backfills_group_workspaces_into_runs_of_the_specs_size() -> None:
    policy = rangeprobe_kpis.backfill_policy
    assert policy == dg.BackfillPolicy.multi_run(max_partitions_per_run=SPEC.workspaces_per_run)


def test_a_partition_without_a_workspace_fails_its_run_with_the_command_that_fixes_it(
    warehouse, dagster_instance
) -> None:
    """Partitions added with "Add partition" in the UI, for a workspace nobody made and for
    a key that cannot be one: each run says what to do."""
    dagster_instance.add_dynamic_partitions(RANGEPROBE_PARTITIONS.name, ["ghost-co", "Ghost Co"])
    messages = {}
    for partition in ("ghost-co", "Ghost Co"):
        result = dg.materialize(
            [rangeprobe_kpis],
            instance=dagster_instance,
            partition_key=partition,
            resources={**resources([SPEC]), "rangeprobe": RangeProbeAdapter(batch_size=BATCH)},
            raise_on_error=False,
        )
        assert not result.success
        messages[partition] = failure_message(result)
    command = "kpi-pipelines workspace add ghost-co --currency USD --timezone UTC"
    assert f"`{command}`" in messages["ghost-co"]
    assert "'Ghost Co' is not a workspace id" in messages["Ghost Co"]
    assert "`kpi-pipelines workspace add <id>" in messages["Ghost Co"]


SCHEDULED = dataclasses.replace(SPEC, cadence=Cadence.every_hours(1))


def tick(instance: dg.DagsterInstance, at: datetime) -> list[dg.RunRequest]:
    """One tick of the probe's hourly schedule, as the daemon evaluates it."""
    definitions = provider_definitions(SCHEDULED)
    assert definitions.schedule is not None
    defs = dg.Definitions(
        assets=[definitions.asset],
        jobs=[definitions.job],
        schedules=[definitions.schedule],
        resources={"warehouse": WarehouseResource(), "rangeprobe": RangeProbeAdapter()},
    )
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=at,
        resources={"warehouse": WarehouseResource()},
        repository_def=defs.get_repository_def(),
    ) as context:
        data = definitions.schedule.evaluate_tick(context)
    return list(data.run_requests or [])


def launch(instance: dg.DagsterInstance, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """A tick's run request executed as the daemon would launch it: its tags (a partition or
    a range), its run config."""
    definitions = provider_definitions(SCHEDULED)
    return dg.materialize(
        [definitions.asset],
        instance=instance,
        resources={
            **resources([SCHEDULED]),
            "rangeprobe": RangeProbeAdapter(batch_size=BATCH),
        },
        run_config=request.run_config,
        tags=request.tags,
        partition_key=request.partition_key,
        raise_on_error=False,
    )


def test_a_scheduled_tick_groups_workspaces_and_retries_a_failed_one_alone(
    warehouse, dagster_instance, workspaces, monkeypatch
) -> None:
    ids = workspaces(ws_a="ok", ws_b="crash", ws_c="ok", ws_d=None, ws_e="ok", ws_f="ok")
    now = datetime.now(UTC)
    requests = tick(dagster_instance, now)
    # Up to the spec's 10 per run, side by side among the provider's partitions: ws-d (no
    # connection) has none, so it splits no run and no run plans it.
    assert tick_workspaces(dagster_instance, "rangeprobe", requests) == [
        ["ws-a", "ws-b", "ws-c", "ws-e", "ws-f"]
    ]
    [grouped] = requests
    assert grouped.tags[WORKSPACES_TAG] == "5" and CONNECTION_TAG not in grouped.tags
    assert grouped.run_config == {"ops": {"rangeprobe_kpis": {"config": {"connection": None}}}}
    assert grouped.run_key and grouped.run_key.startswith("rangeprobe:ws-a..ws-f:")
    monkeypatch.setenv("KPI_WORKSPACES_PER_RUN", "2")
    assert tick_workspaces(dagster_instance, "rangeprobe", tick(dagster_instance, now)) == [
        ["ws-a", "ws-b"],
        ["ws-c", "ws-e"],
        ["ws-f"],
    ]
    monkeypatch.delenv("KPI_WORKSPACES_PER_RUN")

    [result] = [launch(dagster_instance, request) for request in requests]
    assert not result.success
    assert failure_message(result).startswith("rangeprobe: 1 of 5 workspaces failed")
    connected = [w for w in ids if w != "ws-d"]
    status = dagster_instance.get_status_by_partition(
        rangeprobe_kpis.key, connected, RANGEPROBE_PARTITIONS
    )
    # Each partition ends as its own sync did; ws-d is no partition of the provider's.
    assert "ws-d" not in dagster_instance.get_dynamic_partitions(RANGEPROBE_PARTITIONS.name)
    assert {key: value.value for key, value in status.items()} == {
        "ws-a": "MATERIALIZED",
        "ws-b": "FAILED",
        "ws-c": "MATERIALIZED",
        "ws-e": "MATERIALIZED",
        "ws-f": "MATERIALIZED",
    }
    assert health(warehouse, "ws-b").consecutive_failures == 1

    # The next tick, once ws-b's backoff is over: ws-b is retried in a run of its own (its
    # failure fails no neighbour's run again); the others go on in groups.
    later = tick(dagster_instance, now + timedelta(hours=1, minutes=1))
    assert sorted(tick_workspaces(dagster_instance, "rangeprobe", later)) == [
        ["ws-a"],
        ["ws-b"],
        ["ws-c", "ws-e", "ws-f"],
    ]
    [retry] = [r for r in later if r.partition_key == "ws-b"]
    assert retry.tags[CONNECTION_TAG] == "ws-b/rangeprobe"
    assert retry.run_config == {"ops": {"rangeprobe_kpis": {"config": {"connection": "default"}}}}
    again = launch(dagster_instance, retry)
    assert not again.success and materialized(again) == {}
    assert health(warehouse, "ws-b").consecutive_failures == 2
    assert health(warehouse, "ws-a").consecutive_failures == 0


def test_a_workspace_with_several_connections_syncs_each_in_a_run_that_names_it(
    warehouse, dagster_instance, workspaces, monkeypatch
) -> None:
    workspaces(ws_a="ok", ws_b="ok")
    variable = f"{secret_namespace('ws-b')}PROBE_KEY"
    add_connection(
        warehouse,
        Connection(
            workspace_id="ws-b",
            provider="rangeprobe",
            name="second",
            settings={"behaviour": "ok"},
            secret_env={"api_key": variable},
        ),
    )
    requests = tick(dagster_instance, datetime.now(UTC))
    assert sorted(
        (r.partition_key, r.run_config["ops"]["rangeprobe_kpis"]["config"]["connection"])
        for r in requests
    ) == [("ws-a", "default"), ("ws-b", "default"), ("ws-b", "second")]
    assert all(r.tags[CONNECTION_TAG] for r in requests if r.partition_key == "ws-b")
    assert all(launch(dagster_instance, r).success for r in requests)


def test_a_grouped_runs_sync_waits_for_another_sync_of_the_same_connection(
    warehouse, dagster_instance, workspaces
) -> None:
    """A grouped run carries no run tag per connection for the queue to hold it back by:
    each of its syncs takes its connection's lock in the warehouse, which every sync takes,
    so it waits for one already under way (a webhook's run, `kpi-pipelines sync`)."""
    ids = workspaces(ws_a="ok", ws_b="ok")
    [request] = tick(dagster_instance, datetime.now(UTC))
    assert tick_workspaces(dagster_instance, "rangeprobe", [request]) == [ids]
    outcome: dict[str, dg.ExecuteInProcessResult] = {}
    with connection_sync_lock(warehouse, "ws-a", "rangeprobe", logging.getLogger("test")):
        thread = threading.Thread(
            target=lambda: outcome.update(run=launch(dagster_instance, request))
        )
        thread.start()
        thread.join(timeout=3)
        assert thread.is_alive()  # waiting for ws-a's lock, held here
        assert stored(warehouse, "ws-a") == 0
    thread.join(timeout=120)
    result = outcome["run"]
    assert result.success, failure_message(result)
    assert stored(warehouse, "ws-a") == stored(warehouse, "ws-b") == POINTS
    assert "waiting for another sync of ws-a/rangeprobe to finish" in everything_the_run_left(
        dagster_instance, result.run_id
    )
