"""Drop folders: the sensor, evaluated on a real instance, and the runs it requests."""

import os
import time
from pathlib import Path

import dagster as dg
import pytest

from kpi_pipelines.definitions import RESOURCES, defs
from kpi_pipelines.integrations.csv_upload.drop_folder import csv_drop_folder_sensor
from kpi_pipelines.warehouse.control import Connection, add_connection
from kpi_pipelines.warehouse.tenant_data import read_points
from kpi_pipelines_tests.canary import scanned_instance

MAPPING = {"mapping": {"date_column": "day", "metric": "orders", "value_column": "n"}}


@pytest.fixture
def drop_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KPI_CSV_DROP_DIR", str(tmp_path / "drop"))
    return tmp_path / "drop"


def settled(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    old = time.time() - 60
    os.utime(path, (old, old))
    return path


def tick(instance: dg.DagsterInstance):
    with dg.build_sensor_context(instance=instance, resources=RESOURCES) as context:
        return csv_drop_folder_sensor(context)


def run(instance: dg.DagsterInstance, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def("csv_upload_job")
    return job.execute_in_process(
        run_config=request.run_config,
        instance=instance,
        partition_key=request.partition_key,
        raise_on_error=False,
    )


def test_dropped_files_are_imported_once_and_archived(
    warehouse, workspace_a, workspace_b, drop_dir
) -> None:
    add_connection(
        warehouse, Connection(workspace_id="ws-a", provider="csv_upload", settings=MAPPING)
    )
    with scanned_instance() as instance:
        instance.add_dynamic_partitions("workspace", ["ws-a", "ws-b"])
        first = tick(instance)
        assert isinstance(first, dg.SkipReason)
        assert (drop_dir / "ws-a").is_dir() and (drop_dir / "ws-b").is_dir()

        good = settled(drop_dir / "ws-a" / "orders.csv", "day,n\n2026-02-01,3\n")
        bad = settled(drop_dir / "ws-a" / "broken.csv", "day,n\n2026-02-01,x\n")
        settled(drop_dir / "ws-a" / "notes.txt", "not a csv")
        fresh = drop_dir / "ws-a" / "still-copying.csv"
        fresh.write_text("day,n\n", encoding="utf-8")

        result = tick(instance)
        requests = {
            Path(r.run_config["ops"]["csv_upload__kpi_data"]["config"]["path"]).name: r
            for r in result.run_requests
        }
        assert sorted(requests) == ["broken.csv", "orders.csv"]
        assert {r.partition_key for r in requests.values()} == {"ws-a"}

        assert run(instance, requests["orders.csv"]).success
        assert not run(instance, requests["broken.csv"]).success
        assert [p.value for p in read_points(warehouse, "ws-a")] == [3.0]
        assert not good.exists() and not bad.exists()
        [imported] = (drop_dir / "ws-a" / "imported").glob("*orders.csv")
        [errors] = (drop_dir / "ws-a" / "rejected").glob("*broken.csv.errors.txt")
        assert "line 2" in errors.read_text() and imported.read_text().startswith("day,n")

        os.utime(fresh, (time.time() - 60, time.time() - 60))
        later = tick(instance)
        assert [
            Path(r.run_config["ops"]["csv_upload__kpi_data"]["config"]["path"]).name
            for r in later.run_requests
        ] == ["still-copying.csv"]


def test_run_keys_change_only_when_the_file_changes(warehouse, workspace_a, drop_dir) -> None:
    with scanned_instance() as instance:
        path = settled(drop_dir / "ws-a" / "orders.csv", "day,n\n2026-02-01,3\n")
        [one] = tick(instance).run_requests
        [same] = tick(instance).run_requests
        assert one.run_key == same.run_key  # Dagster drops a repeated run key
        settled(path, "day,n\n2026-02-01,4\n2026-02-02,5\n")
        [changed] = tick(instance).run_requests
        assert changed.run_key != one.run_key


def test_subfolder_routes_to_a_named_connection(warehouse, workspace_a, drop_dir) -> None:
    add_connection(
        warehouse,
        Connection(workspace_id="ws-a", provider="csv_upload", name="finance", settings=MAPPING),
    )
    add_connection(
        warehouse,
        Connection(workspace_id="ws-a", provider="csv_upload", name="ops", settings=MAPPING),
    )
    with scanned_instance() as instance:
        instance.add_dynamic_partitions("workspace", ["ws-a"])
        settled(drop_dir / "ws-a" / "finance" / "q1.csv", "day,n\n2026-02-01,9\n")
        [request] = tick(instance).run_requests
        assert (
            request.run_config["ops"]["csv_upload__kpi_data"]["config"]["connection"] == "finance"
        )
        assert run(instance, request).success
        assert [p.value for p in read_points(warehouse, "ws-a")] == [9.0]
