"""What the provider asset factory promises every provider, proven with a probe provider
built from the kit: what leaves a run is redacted, and rejected records are not failures."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any, ClassVar

import dagster as dg
import pytest

from kpi_pipelines.assets.provider_asset import NO_REJECTED_RECORDS
from kpi_pipelines.demo import materialize_provider
from kpi_pipelines.integrations.shared.base_adapter import IntegrationAdapter
from kpi_pipelines.integrations.shared.secrets import read_secret
from kpi_pipelines.integrations.shared.spec import AuthKind, Cadence, ProviderSpec
from kpi_pipelines.models import KPIData, SyncResult
from kpi_pipelines.warehouse.control import (
    Connection,
    add_connection,
    get_connection,
)
from kpi_pipelines_tests.run_results import everything_the_run_left

SECRET = "probe-canary-7f3a9c1e5b"  # no known secret shape: only registration redacts it
KEY_VARIABLE = "WS_WS_A__PROBE_KEY"


class ProbeAdapter(IntegrationAdapter):
    """A provider whose sync does what its `behaviour` setting says."""

    provider: ClassVar[str] = "probe"

    def check_connection(self) -> None:
        read_secret(self.context.connection, "api_key")

    def sync(self) -> SyncResult:
        key = read_secret(self.context.connection, "api_key")
        behaviour = self.context.connection.settings["behaviour"]
        self.context.log.info(f"probe: talking to the API with {key}")
        if behaviour == "crash":
            raise RuntimeError(f"the client library choked on its own key {key!r}")
        if behaviour == "chained":
            try:
                {"Authorization": f"Bearer {key}"}["authorization"]
            except KeyError as cause:
                raise TypeError(f"no header in {{'Authorization': 'Bearer {key}'}}") from cause
        points = self.transform(None)
        writer = self.point_writer()
        with writer.open():
            writer.add_all(points)
        rejected = [f"items it_9: amount: not a number (sent with {key})"]
        return SyncResult(
            success=behaviour != "reject",
            records_processed=2,
            records_rejected=1 if behaviour == "reject" else 0,
            points_written=writer.stats.written,
            errors=rejected if behaviour == "reject" else [],
            last_sync_at=datetime.now(UTC),
        )

    def transform(self, raw: Any) -> list[KPIData]:
        return [
            KPIData(
                value=1.0,
                timestamp=datetime(2026, 1, 1, tzinfo=UTC),
                source="probe",
                workspace_id=self.context.workspace.id,
                metric="probes",
            )
        ]


PROBE = ProviderSpec(
    key="probe",
    display_name="Probe",
    description="A probe provider for the asset factory's own tests.",
    adapter=ProbeAdapter,
    auth=AuthKind.API_KEY,
    group="tests",
    kinds=frozenset({"python"}),
    metrics=("probes",),
    cadence=Cadence.every_hours(1),
)


def _run(warehouse, instance: dg.DagsterInstance, behaviour: str) -> dg.ExecuteInProcessResult:
    add_connection(
        warehouse,
        Connection(
            workspace_id="ws-a",
            provider="probe",
            settings={"behaviour": behaviour},
            secret_env={"api_key": KEY_VARIABLE},
        ),
    )
    return materialize_provider(warehouse, instance, PROBE, "ws-a")


@pytest.fixture
def probe_secret(monkeypatch) -> str:
    monkeypatch.setenv(KEY_VARIABLE, SECRET)
    return SECRET


@pytest.mark.parametrize("behaviour", ["crash", "chained"])
def test_an_unexpected_exception_leaves_the_run_redacted(
    warehouse, workspace_a, dagster_instance, probe_secret, behaviour
) -> None:
    result = _run(warehouse, dagster_instance, behaviour)
    assert not result.success
    left = everything_the_run_left(dagster_instance, result.run_id)
    assert "probe failed unexpectedly" in left and "[REDACTED]" in left
    assert probe_secret not in left
    connection = _connection(warehouse)
    assert connection.consecutive_failures == 1
    assert probe_secret not in (connection.last_error or "")


def test_log_lines_of_an_adapter_are_redacted(
    warehouse, workspace_a, dagster_instance, probe_secret
) -> None:
    result = _run(warehouse, dagster_instance, "ok")
    assert result.success
    left = everything_the_run_left(dagster_instance, result.run_id)
    assert "probe: talking to the API with [REDACTED]" in left
    assert probe_secret not in left


def test_rejected_records_are_named_and_checked_but_do_not_back_off_the_connection(
    warehouse, workspace_a, dagster_instance, probe_secret
) -> None:
    result = _run(warehouse, dagster_instance, "reject")
    assert result.success  # the valid records were stored: the run itself did its job
    [materialization] = result.asset_materializations_for_node("probe_kpis")
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert metadata["records_rejected"] == 1 and metadata["points_written"] == 1
    assert metadata["errors"] == ["items it_9: amount: not a number (sent with [REDACTED])"]
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert not checks[NO_REJECTED_RECORDS].passed
    assert checks[NO_REJECTED_RECORDS].severity == dg.AssetCheckSeverity.WARN
    connection = _connection(warehouse)
    assert connection.consecutive_failures == 0 and connection.next_attempt_at is None
    assert connection.last_success_at is not None
    assert probe_secret not in everything_the_run_left(dagster_instance, result.run_id)


def _connection(warehouse) -> Connection:
    with warehouse.control() as db:
        return get_connection(db, "ws-a", "probe")


def test_probe_secret_is_not_a_known_shape() -> None:
    from kpi_pipelines.integrations.shared.redaction import Redactor

    # The probe proves registration, not pattern matching, keeps the secret out.
    assert Redactor().redact(f"key {SECRET}") == f"key {SECRET}"
    assert os.environ.get(KEY_VARIABLE) is None
