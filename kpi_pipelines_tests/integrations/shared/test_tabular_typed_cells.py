"""Typed cells (the Sheets API's UNFORMATTED_VALUE): numbers as values, serial-number dates.

Text cells keep the CSV rules; these only add what a JSON number in a cell means.
"""

from __future__ import annotations

import datetime

import pytest

from kpi_pipelines.integrations.shared.tabular import (
    TableRejected,
    TabularMapping,
    parse_table,
    serial_date,
    validate_table,
)

D = datetime.date
HEADER = ["Date", "Metric", "Value"]


def rows_of(*rows: list[object], first_line: int = 2) -> list[tuple[int, list[object]]]:
    return list(enumerate(rows, start=first_line))


def parse(rows, **mapping):
    table_mapping = TabularMapping(
        date_column="Date", metric_column="Metric", value_column="Value", **mapping
    )
    validate_table(HEADER, rows, table_mapping, source="sheet")
    return [
        (r.line, r.day, r.metric, r.value)
        for r in parse_table(HEADER, rows, table_mapping, source="sheet")
    ]


@pytest.mark.parametrize(
    ("serial", "day"),
    [
        (0, D(1899, 12, 30)),
        (1, D(1899, 12, 31)),
        (61, D(1900, 3, 1)),
        (45292, D(2024, 1, 1)),
        (45292.99, D(2024, 1, 1)),  # a time of day is dropped
        (45351, D(2024, 2, 29)),
    ],
)
def test_serial_numbers_are_days_since_1899_12_30(serial, day) -> None:
    assert serial_date(serial) == day


def test_numbers_in_the_date_and_value_columns_are_read_as_typed() -> None:
    rows = rows_of([45292, "signups", 12], [45293.5, "revenue", 1234.5], ["2024-01-03", "mrr", "7"])
    assert parse(rows) == [
        (2, D(2024, 1, 1), "signups", 12.0),
        (3, D(2024, 1, 2), "revenue", 1234.5),
        (4, D(2024, 1, 3), "mrr", 7.0),
    ]


def test_a_typed_number_ignores_the_text_separators_of_the_mapping() -> None:
    # With '.' as the thousands separator the text "1.234" is 1234; the number 1.234 stays 1.234.
    rows = rows_of([45292, "ratio", 1.234], [45292, "count", "1.234"])
    assert parse(rows, thousands_separator=".", decimal_separator=",") == [
        (2, D(2024, 1, 1), "ratio", 1.234),
        (3, D(2024, 1, 1), "count", 1234.0),
    ]


def test_bad_typed_cells_are_reported_with_their_lines() -> None:
    rows = rows_of(
        [20240105, "signups", 1],  # a yyyymmdd number is not a serial date
        [-3, "signups", 2],
        [45292, "signups", True],  # a checkbox is not a number
        [45293, "signups", "#N/A"],
        [True, "signups", 1],
    )
    mapping = TabularMapping(date_column="Date", metric_column="Metric", value_column="Value")
    with pytest.raises(TableRejected) as raised:
        validate_table(HEADER, rows, mapping, source="sheet")
    message = str(raised.value)
    assert "5 invalid rows" in message
    assert "line 2, column 'Date': 20240105 is not a date" in message
    assert "spreadsheet date serial number" in message
    assert "line 3, column 'Date': -3 is not a date" in message
    assert "line 4, column 'Value': 'True' is not a number" in message
    assert "line 5, column 'Value': '#N/A' is not a number" in message
    assert "line 6, column 'Date': 'True' is not a date" in message


def test_typed_and_text_dates_of_one_day_are_duplicates() -> None:
    rows = rows_of([45292, "signups", 1], ["2024-01-01", "signups", 2])
    mapping = TabularMapping(date_column="Date", metric_column="Metric", value_column="Value")
    with pytest.raises(TableRejected, match="line 3: duplicates line 2"):
        validate_table(HEADER, rows, mapping, source="sheet")


def test_huge_typed_integers_are_row_errors_not_crashes() -> None:
    mapping = TabularMapping(
        date_column="Date", metric_column="Metric", value_column="Value", dimension_columns=["C"]
    )
    rows = rows_of(
        [45292, "signups", 10**400, "a"],  # beyond a float
        [10**400, "signups", 1, "a"],  # beyond any serial date
        [45292, "signups", 1, 10**5000],  # beyond Python's int -> str digit limit
    )
    with pytest.raises(TableRejected) as raised:
        validate_table([*HEADER, "C"], rows, mapping, source="sheet")
    assert [(e.line, e.column) for e in raised.value.errors] == [
        (2, "Value"),
        (3, "Date"),
        (4, None),
    ]
    assert len(str(raised.value)) < 1000
    assert "line 4: has a cell that holds a number of more than 4300 digits" in str(raised.value)
