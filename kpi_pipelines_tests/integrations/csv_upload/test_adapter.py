"""CSV uploads end to end: a Dagster run of the partitioned asset on the real PostgreSQL."""

import os
import shutil
import time
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from kpi_pipelines.automation.partitions import register_partition
from kpi_pipelines.demo import materialize_provider
from kpi_pipelines.integrations.csv_upload.adapter import CsvUploadAdapter
from kpi_pipelines.integrations.shared.rejection_reports import (
    MAX_REPORT_BYTES,
    MAX_REPORTED_ROWS,
    private_folder,
)
from kpi_pipelines.resources import WarehouseResource
from kpi_pipelines.warehouse.control import Connection, add_connection, list_connections
from kpi_pipelines.warehouse.tenant_data import read_points
from kpi_pipelines_tests.canary import scanned_instance
from kpi_pipelines_tests.conftest import table_snapshot
from kpi_pipelines_tests.run_results import failure_message

MAPPING = {
    "date_column": "date",
    "metric_column": "metric",
    "value_column": "value",
    "dimension_columns": ["channel"],
    "thousands_separator": ",",
    "currency_symbols": "$",
}

GOOD = 'date,metric,channel,value\n2026-01-01,signups,ads,12\n2026-01-01,revenue,,"$1,250.50"\n2026-01-02,signups,ads,7\n'


@pytest.fixture
def instance():
    with scanned_instance() as instance:
        for workspace in ("ws-a", "ws-b"):
            register_partition(instance, workspace, "csv_upload")
        yield instance


@pytest.fixture
def csv_connection(warehouse, workspace_a) -> Connection:
    return add_connection(
        warehouse,
        Connection(workspace_id="ws-a", provider="csv_upload", settings={"mapping": MAPPING}),
    )


def run_import(
    instance, path: Path, workspace: str = "ws-a", adapter: CsvUploadAdapter | None = None
) -> dg.ExecuteInProcessResult:
    return materialize_provider(
        WarehouseResource().get(),
        instance,
        "csv_upload",
        workspace,
        {"path": str(path)},
        adapter=adapter,
    )


def write(tmp_path: Path, text: str | bytes, name: str = "metrics.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_import_writes_kpis_and_reports_metadata(
    warehouse, csv_connection, instance, tmp_path
) -> None:
    result = run_import(instance, write(tmp_path, GOOD))
    assert result.success
    points = read_points(warehouse, "ws-a")
    assert [(p.metric, p.timestamp.date().isoformat(), p.dimensions, p.value) for p in points] == [
        ("revenue", "2026-01-01", {}, 1250.5),
        ("signups", "2026-01-01", {"channel": "ads"}, 12.0),
        ("signups", "2026-01-02", {"channel": "ads"}, 7.0),
    ]
    assert all(p.metadata["granularity"] == "day" and p.source == "csv_upload" for p in points)
    [materialization] = result.get_asset_materialization_events()
    metadata = {k: v.value for k, v in materialization.materialization.metadata.items()}
    assert metadata["records_processed"] == 3
    assert metadata["points_written"] == 3
    assert metadata["records_rejected"] == 0
    assert metadata["peak_memory_mb"] > 0 and metadata["records_per_second"] > 0
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        "no_missing_values": True,
        "no_duplicate_keys": True,
        "no_rejected_records": True,
    }
    [connection] = list_connections_of(warehouse)
    assert connection.last_success_at is not None and connection.consecutive_failures == 0


def list_connections_of(warehouse) -> list[Connection]:
    with warehouse.control() as db:
        return list_connections(db, provider="csv_upload")


def test_reimporting_the_same_file_changes_nothing(
    warehouse, csv_connection, instance, tmp_path
) -> None:
    path = write(tmp_path, GOOD)
    assert run_import(instance, path).success
    before = table_snapshot(warehouse)
    second = run_import(instance, path)
    assert second.success
    metadata = {
        k: v.value
        for k, v in second.get_asset_materialization_events()[0].materialization.metadata.items()
    }
    assert metadata["points_written"] == 0 and metadata["points_unchanged"] == 3
    after = table_snapshot(warehouse)
    assert after["kpi_data"] == before["kpi_data"] and after["audit_log"] == before["audit_log"]


BAD_INPUTS = {
    "bad rows": (
        "date,metric,channel,value\n2026-01-01,signups,ads,12\n2026-13-01,signups,ads,3\n"
        "2026-01-03,Sign Ups,ads,4\n2026-01-04,signups,ads,=SUM(A1:A3)\n",
        ["line 3", "line 4", "line 5", "3 invalid row"],
    ),
    "empty file": ("", ["empty"]),
    "missing column": ("date,metric,value\n2026-01-01,signups,1\n", ["channel"]),
    "wrong encoding": (
        "date,metric,channel,value\n2026-01-01,signups,caf\xe9,1\n".encode("latin-1"),
        ["UTF-8"],
    ),
    # A point's key is indexed: a breakdown too large for it (incompressible, as random text
    # is) must be a row error, not a database limit hit half way through the write.
    "breakdown too large": (
        "date,metric,channel,value\n2026-01-01,signups,ads,1\n2026-01-02,signups,"
        + "".join(chr(0x4E00 + (n * 7919) % 20000) for n in range(3000))
        + ",2\n",
        ["line 3", "the breakdown's 1 value(s) take 9014 bytes; at most 1500"],
    ),
    "metric key too long": (
        "date,metric,channel,value\n2026-01-01," + "m" * 64 + ",ads,1\n",
        ["line 2", "at most 63 characters"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_rejected_whole_and_changes_no_table(
    warehouse, csv_connection, instance, tmp_path, case
) -> None:
    assert run_import(instance, write(tmp_path, GOOD, "first.csv")).success
    before = table_snapshot(warehouse)
    text, expected = BAD_INPUTS[case]
    result = run_import(instance, write(tmp_path, text))
    assert not result.success
    message = failure_message(result)
    for fragment in expected:
        assert fragment in message, message
    after = table_snapshot(warehouse)
    # The failed run is recorded on the connection (health), and nothing else changed.
    assert {t: rows for t, rows in after.items() if t != "connections"} == {
        t: rows for t, rows in before.items() if t != "connections"
    }
    [connection] = list_connections_of(warehouse)
    assert connection.consecutive_failures == 1 and connection.last_error


def test_oversized_file_is_rejected_with_its_own_message(
    warehouse, csv_connection, instance, tmp_path
) -> None:
    before = table_snapshot(warehouse)
    result = run_import(instance, write(tmp_path, GOOD), adapter=CsvUploadAdapter(max_bytes=64))
    assert not result.success
    assert "limit" in failure_message(result)
    assert table_snapshot(warehouse)["kpi_data"] == before["kpi_data"]


def test_missing_file_and_missing_mapping_say_what_to_fix(
    warehouse, workspace_a, instance, tmp_path
) -> None:
    add_connection(warehouse, Connection(workspace_id="ws-a", provider="csv_upload", settings={}))
    result = run_import(instance, write(tmp_path, GOOD))
    assert "mapping" in failure_message(result)
    add_connection(
        warehouse,
        Connection(workspace_id="ws-a", provider="csv_upload", settings={"mapping": MAPPING}),
    )
    result = run_import(instance, tmp_path / "nope.csv")
    assert "nope.csv" in failure_message(result)


def test_workspace_without_a_csv_connection_fails_clearly(
    warehouse, workspace_a, workspace_b, instance, tmp_path
) -> None:
    result = run_import(instance, write(tmp_path, GOOD), workspace="ws-b")
    assert "has no csv_upload connection" in failure_message(result)


def test_import_for_one_workspace_never_touches_another(
    warehouse, csv_connection, workspace_b, instance, tmp_path
) -> None:
    add_connection(
        warehouse,
        Connection(workspace_id="ws-b", provider="csv_upload", settings={"mapping": MAPPING}),
    )
    assert run_import(instance, write(tmp_path, GOOD), workspace="ws-b").success
    assert read_points(warehouse, "ws-a") == []
    assert len(read_points(warehouse, "ws-b")) == 3
    with warehouse.tenant("ws-b", actor="t") as db:
        assert db.execute(sa.text("SELECT count(*) FROM audit_log")).scalar() == 3


def test_a_file_of_one_character_lines_fails_with_a_bounded_message_and_report(
    warehouse, csv_connection, instance, tmp_path, kpi_home
) -> None:
    """The review's file, a fifth of it: 5 MB of one-character lines made a 397 MB report
    (three errors a row, every one listed; this megabyte made 82 MB). Now the report lists
    the first rows in full and counts the rest by reason, under MAX_REPORT_BYTES."""
    rows = 1024 * 1024 // 2
    result = run_import(instance, write(tmp_path, "date,metric,channel,value\n" + "x\n" * rows))
    assert not result.success
    message = failure_message(result)
    report = kpi_home / "rejections" / "ws-a" / f"{result.run_id}-metrics.csv.errors.txt"
    assert len(message.encode()) < 8 * 1024, len(message)
    assert message.startswith(
        f"metrics.csv was rejected and nothing was imported: {rows} invalid rows"
        f" ({3 * rows} errors)\n"
        "line 2, column 'date': 'x' is not a date; expected YYYY-MM-DD\n"
        "line 2, column 'metric': metric is empty\n"
        "line 2, column 'value': value is empty\n"
    )
    assert message.endswith(
        f"the first {MAX_REPORTED_ROWS} invalid rows are listed in {report}, the others"
        " counted by reason"
    )
    assert report.stat().st_size <= MAX_REPORT_BYTES
    lines = report.read_text().splitlines()
    listed = [
        int(line.split(",")[0].removeprefix("line ")) for line in lines if line[:5] == "line "
    ]
    assert listed == [line for line in range(2, 2 + MAX_REPORTED_ROWS) for _ in range(3)]
    left_out = rows - MAX_REPORTED_ROWS
    assert lines[-4:] == [
        f"metrics.csv: {rows} invalid row(s) ({3 * rows} errors) in all; {left_out} row(s)"
        f" ({3 * left_out} errors) after the first {MAX_REPORTED_ROWS} are left out. Their"
        " errors by reason:",
        f"{left_out:>10}  column 'date': is not a date; expected YYYY-MM-DD",
        f"{left_out:>10}  column 'metric': metric is empty",
        f"{left_out:>10}  column 'value': value is empty",
    ]
    assert not [p for p in report.parent.iterdir() if p.name.startswith(".")]  # no temporary
    [connection] = list_connections_of(warehouse)
    assert len(connection.last_error.encode()) < 8 * 1024
    assert read_points(warehouse, "ws-a") == []


def test_reports_are_kept_for_the_retention_and_at_most_so_many_per_workspace(
    warehouse, csv_connection, workspace_b, instance, tmp_path, kpi_home, monkeypatch
) -> None:
    """A new report removes, in every workspace's folder, the reports older than
    KPI_REJECTION_RETENTION_DAYS, and the oldest beyond KPI_REJECTION_MAX_REPORTS."""
    monkeypatch.setenv("KPI_REJECTION_RETENTION_DAYS", "10")
    monkeypatch.setenv("KPI_REJECTION_MAX_REPORTS", "2")
    shutil.rmtree(kpi_home / "rejections", ignore_errors=True)  # other tests' reports
    folders = {ws: kpi_home / "rejections" / ws for ws in ("ws-a", "ws-b")}
    now = time.time()
    for ws, ages in (("ws-a", (11, 3, 2)), ("ws-b", (40, 1))):
        private_folder(folders[ws])  # as the import makes them
        for age in ages:
            report = folders[ws] / f"run-{age}-old.csv.errors.txt"
            report.write_text("...")
            os.utime(report, (now - age * 86400, now - age * 86400))
    (folders["ws-a"] / "notes.txt").write_text("not a report: left alone")

    rows = "".join(f"2026-01-{1 + i % 28:02},signups,ads{i},x\n" for i in range(50))
    result = run_import(instance, write(tmp_path, "date,metric,channel,value\n" + rows))
    assert not result.success
    assert {p.name for p in folders["ws-a"].iterdir()} == {
        "notes.txt",
        f"{result.run_id}-metrics.csv.errors.txt",
        "run-2-old.csv.errors.txt",
    }
    assert [p.name for p in folders["ws-b"].iterdir()] == ["run-1-old.csv.errors.txt"]
