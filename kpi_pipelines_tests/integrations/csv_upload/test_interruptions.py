"""A CSV import is one transaction: killed (SIGKILL) or cut off by a PostgreSQL restart while
it writes, it leaves nothing, and the rerun stores exactly what a calm import does."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from kpi_pipelines.demo import materialize_provider
from kpi_pipelines.warehouse.control import Connection, Workspace, add_connection, add_workspace
from kpi_pipelines_tests.interruptions import (
    kill_sync_midway,
    restart_postgres_during,
    tenant_rows,
    writing,
)
from kpi_pipelines_tests.run_results import failure_message

MAPPING = {"date_column": "day", "metric_column": "metric", "value_column": "value"}


@pytest.fixture
def big_csv(tmp_path: Path) -> Path:
    """Enough rows that the import's one transaction stays open a while."""
    path = tmp_path / "big.csv"
    start = date(2020, 1, 1)
    with path.open("w", encoding="utf-8") as handle:
        handle.write("day,metric,value\n")
        for n in range(10_000):
            handle.write(f"{start + timedelta(days=n // 20)},metric_{n % 20},{n}\n")
    return path


def _workspace(warehouse, workspace_id: str) -> None:
    add_workspace(warehouse, Workspace(id=workspace_id, name=workspace_id))
    add_connection(
        warehouse,
        Connection(workspace_id=workspace_id, provider="csv_upload", settings={"mapping": MAPPING}),
    )


@pytest.fixture
def calm(warehouse, dagster_instance, big_csv):
    _workspace(warehouse, "calm")
    result = materialize_provider(
        warehouse, dagster_instance, "csv_upload", "calm", {"path": str(big_csv)}
    )
    assert result.success, failure_message(result)
    return tenant_rows(warehouse, "calm")


def test_an_import_killed_while_it_writes_leaves_nothing(
    warehouse, dagster_instance, big_csv, calm
) -> None:
    _workspace(warehouse, "killed")
    killed = kill_sync_midway(
        "csv_upload", "killed", config={"path": str(big_csv)}, when=lambda: writing(warehouse)
    )
    assert killed, "the import finished before it could be killed"
    assert tenant_rows(warehouse, "killed") == {"kpi_data": [], "raw_records": []}
    rerun = materialize_provider(
        warehouse, dagster_instance, "csv_upload", "killed", {"path": str(big_csv)}
    )
    assert rerun.success, failure_message(rerun)
    assert tenant_rows(warehouse, "killed") == calm


@pytest.mark.usefixtures("kpi_home")
def test_a_postgres_restart_while_it_writes_leaves_nothing(
    warehouse, dagster_instance, big_csv, calm
) -> None:
    _workspace(warehouse, "restarted")
    first = restart_postgres_during(
        lambda: materialize_provider(
            warehouse, dagster_instance, "csv_upload", "restarted", {"path": str(big_csv)}
        ),
        when=lambda: writing(warehouse),
    )
    assert not first.success
    assert "lost the warehouse database mid-sync" in failure_message(first)
    assert tenant_rows(warehouse, "restarted") == {"kpi_data": [], "raw_records": []}
    rerun = materialize_provider(
        warehouse, dagster_instance, "csv_upload", "restarted", {"path": str(big_csv)}
    )
    assert rerun.success, failure_message(rerun)
    assert tenant_rows(warehouse, "restarted") == calm
