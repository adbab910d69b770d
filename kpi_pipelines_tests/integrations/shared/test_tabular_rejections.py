"""A rejected table's errors: a bounded message naming a bounded report, which lists the
first rows in full and counts the others by reason."""

from __future__ import annotations

import pickle
import re
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pydantic
import pytest

from kpi_pipelines import settings
from kpi_pipelines.integrations.shared.rejection_reports import (
    MAX_LINE_BYTES,
    MAX_REASONS,
    MAX_REPORT_BYTES,
    MAX_REPORTED_ROWS,
    OTHER_REASONS,
    ErrorReport,
    rejection_report_path,
)
from kpi_pipelines.integrations.shared.tabular import (
    MAX_ERRORS_SHOWN,
    RowError,
    TableFormatError,
    TableRejected,
    TabularMapping,
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


def listed_lines(report: Path) -> list[int]:
    """The line numbers of the errors a report lists in full."""
    return [
        int(found[1])
        for found in (re.match(r"line (\d+)[,:]", line) for line in report.read_text().splitlines())
        if found
    ]


def test_a_hundred_thousand_bad_rows_give_a_bounded_message_and_a_bounded_report(
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
        f"\n... and {200_000 - MAX_ERRORS_SHOWN} more; the first {MAX_REPORTED_ROWS} invalid"
        f" rows are listed in {report}, the others counted by reason"
    )
    assert (error.bad_rows, error.error_count, error.report) == (100_000, 200_000, report)
    assert len(error.errors) == MAX_ERRORS_SHOWN
    assert report.stat().st_size <= MAX_REPORT_BYTES
    # The first rows in full, every error of each ...
    assert listed_lines(report) == [line for line in range(2, 1002) for _ in (1, 2)]
    lines = report.read_text().splitlines()
    assert lines[0].startswith("Errors in big.csv, line numbers as in the table")
    # ... then what was left out, counted by reason (without the cells' text).
    summary = lines.index(
        "big.csv: 100000 invalid row(s) (200000 errors) in all; 99000 row(s) (198000 errors)"
        " after the first 1000 are left out. Their errors by reason:"
    )
    assert [line.split(None, 1) for line in lines[summary + 1 :]] == [
        ["99000", "column 'date': is not a valid date"],
        ["99000", "column 'value': is not a number"],
    ]
    assert [p.name for p in report.parent.iterdir()] == ["big.errors.txt"]  # no temporary file


def test_a_report_stays_under_its_bound_whatever_the_cells_and_names(tmp_path: Path) -> None:
    """The worst lines: long column names and cells of four-byte characters, a breakdown
    too large, several errors a row; more rows than the report lists."""
    name = "\U0001f600" * 10_000
    mapping = TabularMapping(
        date_column=name, value_column="v" + name, metric_column="m" + name, dimension_columns=["d"]
    )
    cell = "\U0001f4a5" * 100_000
    header = [name, "v" + name, "m" + name, "d"]
    rows = ((line, [cell, cell, cell, cell]) for line in range(2, 5002))
    with pytest.raises(TableRejected) as caught:
        validate_table(header, rows, mapping, source="s.csv", report=tmp_path / "r.txt")
    assert len(str(caught.value)) < 8 * 1024
    report = (tmp_path / "r.txt").read_bytes()
    assert len(report) <= MAX_REPORT_BYTES
    assert max(len(line) + 1 for line in report.split(b"\n")) <= MAX_LINE_BYTES
    assert listed_lines(tmp_path / "r.txt")[-1] == 1 + MAX_REPORTED_ROWS
    assert b"4000 row(s) (12000 errors) after the first 1000 are left out" in report


def test_reasons_beyond_the_limit_are_counted_together(tmp_path: Path) -> None:
    report = ErrorReport("t", tmp_path / "r.txt", shown=0)
    kinds = MAX_REASONS + 50
    for line in range(2, 2 + MAX_REPORTED_ROWS + kinds):
        report.add([RowError(line, None, f"reason {line}", f"kind {line % kinds}")])
    text = report.finish().read_text()
    counted = text.split("Their errors by reason:\n", 1)[1].splitlines()
    assert len(counted) == MAX_REASONS + 1
    assert counted[-1].split(None, 1) == [str(kinds - MAX_REASONS), OTHER_REASONS]


def test_huge_cells_and_column_names_are_cut_in_the_message(tmp_path: Path) -> None:
    long_name = "v" * 50_000
    mapping = TabularMapping(date_column="date", value_column=long_name, metric="m")
    rows = ((line, ["2024-01-01", "9" * 100 + "x" * 100_000]) for line in range(2, 200))
    with pytest.raises(TableRejected) as caught:
        validate_table(["date", long_name], rows, mapping, source="s", report=tmp_path / "r.txt")
    assert len(str(caught.value)) < 8 * 1024
    # The report lists every row, each line cut the same way.
    assert listed_lines(tmp_path / "r.txt") == list(range(2, 200))
    report = (tmp_path / "r.txt").read_text().splitlines()
    assert max(len(line) for line in report) < 400
    assert report[-1] == "s: 198 invalid row(s) (198 errors) in all, every one listed above."


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
    shutil.rmtree(kpi_home / "rejections", ignore_errors=True)  # made by the import itself
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
