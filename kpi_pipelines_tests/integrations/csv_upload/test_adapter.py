"""CSV uploads end to end: a Dagster run of the partitioned asset on the real PostgreSQL."""

from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from kpi_pipelines.demo import materialize_provider
from kpi_pipelines.integrations.csv_upload.adapter import CsvUploadAdapter
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
        instance.add_dynamic_partitions("workspace", ["ws-a", "ws-b"])
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


def test_a_file_of_a_hundred_thousand_bad_rows_fails_with_a_bounded_message(
    warehouse, csv_connection, instance, tmp_path, kpi_home
) -> None:
    rows = "".join(f"2026-01-{1 + i % 28:02},signups,ads{i},x\n" for i in range(100_000))
    result = run_import(instance, write(tmp_path, "date,metric,channel,value\n" + rows))
    assert not result.success
    message = failure_message(result)
    report = kpi_home / "rejections" / "ws-a" / f"{result.run_id}-metrics.csv.errors.txt"
    assert len(message.encode()) < 8 * 1024, len(message)
    assert message.startswith(
        "metrics.csv was rejected and nothing was imported: 100000 invalid rows\n"
        "line 2, column 'value': 'x' is not a number\n"
    )
    assert message.endswith(f"... and 99980 more; every error is listed in {report}")
    listed = report.read_text().splitlines()[1:]
    assert [int(line.split(",")[0].removeprefix("line ")) for line in listed] == list(
        range(2, 100_002)
    )
    assert not [p for p in report.parent.iterdir() if p.name.startswith(".")]  # no temporary
    [connection] = list_connections_of(warehouse)
    assert len(connection.last_error.encode()) < 8 * 1024
    assert read_points(warehouse, "ws-a") == []
