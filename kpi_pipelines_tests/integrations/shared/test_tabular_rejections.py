"""A rejected table's errors: every one kept in a report, a bounded message naming it."""

from __future__ import annotations

import pickle
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pydantic
import pytest

from kpi_pipelines import settings
from kpi_pipelines.integrations.shared.tabular import (
    MAX_ERRORS_SHOWN,
    TableFormatError,
    TableRejected,
    TabularMapping,
    rejection_report_path,
    validate_table,
)

MAPPING = TabularMapping(date_column="date", value_column="value", metric_column="metric")
HEADER = ["date", "metric", "value"]


def bad_rows(count: int, cell: str = "x") -> Iterator[tuple[int, list[str]]]:
    """`count` rows with two errors each (the date and the value), lines 2, 3, ..."""
    for line in range(2, count + 2):
        yield line, ["2024-13-01", "signups", cell]


def rejection(rows, report: Path | None) -> TableRejected:
    with pytest.raises(TableRejected) as caught:
        validate_table(HEADER, rows, MAPPING, source="big.csv", report=report)
    return caught.value


def test_a_hundred_thousand_bad_rows_give_a_bounded_message_and_a_full_report(
    tmp_path: Path,
) -> None:
    report = tmp_path / "reports" / "big.errors.txt"
    error = rejection(bad_rows(100_000), report)
    message = str(error)
    assert len(message.encode()) < 8 * 1024, len(message)
    assert message.startswith(
        "big.csv was rejected and nothing was imported: 100000 invalid rows (200000 errors)\n"
        "line 2, column 'date': '2024-13-01' is not a valid date (month must be in 1..12)\n"
        "line 2, column 'value': 'x' is not a number\n"
    )
    assert message.endswith(
        f"\n... and {200_000 - MAX_ERRORS_SHOWN} more; every error is listed in {report}"
    )
    assert (error.bad_rows, error.error_count, error.report) == (100_000, 200_000, report)
    assert len(error.errors) == MAX_ERRORS_SHOWN
    lines = report.read_text().splitlines()
    assert lines[0] == "Every error in big.csv, one per line:"
    assert len(lines) == 1 + 200_000
    assert {int(re.match(r"line (\d+),", line)[1]) for line in lines[1:]} == set(range(2, 100_002))
    assert [p.name for p in report.parent.iterdir()] == ["big.errors.txt"]  # no temporary file


def test_huge_cells_and_column_names_are_cut_in_the_message(tmp_path: Path) -> None:
    long_name = "v" * 50_000
    mapping = TabularMapping(date_column="date", value_column=long_name, metric="m")
    rows = ((line, ["2024-01-01", "9" * 100 + "x" * 100_000]) for line in range(2, 200))
    with pytest.raises(TableRejected) as caught:
        validate_table(["date", long_name], rows, mapping, source="s", report=tmp_path / "r.txt")
    assert len(str(caught.value)) < 8 * 1024
    # The report lists every row, each line cut the same way (it grows with rows, not cells).
    report = (tmp_path / "r.txt").read_text().splitlines()
    assert len(report) == 1 + 198 and max(len(line) for line in report) < 400


def test_a_few_errors_are_all_in_the_message_and_need_no_report(tmp_path: Path) -> None:
    report = tmp_path / "r.txt"
    error = rejection(bad_rows(MAX_ERRORS_SHOWN // 2), report)
    assert error.report is None and not report.exists() and list(tmp_path.iterdir()) == []
    assert len(str(error).splitlines()) == 1 + MAX_ERRORS_SHOWN
    assert "more" not in str(error)


def test_a_pass_that_fails_half_way_leaves_no_file(tmp_path: Path) -> None:
    def rows() -> Iterator[tuple[int, list[str]]]:
        yield from bad_rows(500)
        raise TableFormatError(
            "big.csv", "has a quoted field starting on line 502 that is never closed"
        )

    with pytest.raises(TableFormatError):
        validate_table(HEADER, rows(), MAPPING, source="big.csv", report=tmp_path / "x" / "r.txt")
    assert list((tmp_path / "x").iterdir()) == []


def test_a_valid_table_writes_no_report(tmp_path: Path) -> None:
    rows = [(2, ["2024-01-01", "signups", "1"])]
    assert validate_table(HEADER, rows, MAPPING, source="ok", report=tmp_path / "r.txt") == 1
    assert list(tmp_path.iterdir()) == []


def test_rejections_survive_pickling_with_their_counts_and_report(tmp_path: Path) -> None:
    error = rejection(bad_rows(50), tmp_path / "r.txt")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.source, copy.errors, copy.bad_rows, copy.error_count, copy.report) == (
        error.source,
        error.errors,
        50,
        100,
        tmp_path / "r.txt",
    )
    assert str(copy) == str(error)


def test_a_rejection_can_name_where_the_list_is(tmp_path: Path) -> None:
    error = rejection(bad_rows(50), tmp_path / "r.txt")
    assert error.describe(listed_below=True).endswith(
        "... and 80 more; every error is listed below"
    )
    moved = error.with_report(tmp_path / "elsewhere.txt")
    assert str(moved).endswith(f"every error is listed in {tmp_path / 'elsewhere.txt'}")


def test_report_paths_are_private_and_safe_whatever_the_names(kpi_home: Path) -> None:
    path = rejection_report_path("ws-a", "run/../1", "../../etc/.passwd\n.csv")
    assert path.parent == settings.kpi_home() / "rejections" / "ws-a"
    assert "/" not in path.name and not path.name.startswith(".")
    assert path.name == "run_.._1-etc_.passwd_.csv.errors.txt"
    rows = bad_rows(50)
    with pytest.raises(TableRejected):
        validate_table(HEADER, rows, MAPPING, source="x", report=path)
    for folder in (path.parent, path.parent.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_mapping_echoes_tenant_names_cut(tmp_path: Path) -> None:
    # Connection settings are tenant input too: their error messages stay short.
    huge = "c" * 100_000
    for fields in (
        {"date_column": huge, "value_column": huge, "metric": "m"},
        {"date_column": "d", "value_column": "v", "metric": "m", "date_formats": [huge]},
        {"date_column": "d", "value_column": "v", "metric": "m", "thousands_separator": huge},
        {"date_column": "d", "value_column": "v", "metric": huge.upper()},
    ):
        with pytest.raises(pydantic.ValidationError) as caught:
            TabularMapping(**fields)
        assert len(caught.value.errors()[0]["msg"]) < 500
