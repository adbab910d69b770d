"""Properties of the shared table rules, for any cells a CSV file or a Sheets API read can hold.

Whatever the header and cells, `validate_table` either returns the number of data rows or
raises `TableRejected`/`TableFormatError` (nothing else), every reported error names a line
that exists in the input, and the rows `parse_table` then yields are exactly the valid
rows. Where the generator builds a valid table itself, the rows equal what it wrote; where
it breaks some rows, exactly those lines are reported.
"""

from __future__ import annotations

import datetime
import math
import re
import tempfile
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kpi_pipelines.integrations.shared.tabular import (
    MAX_ERRORS_SHOWN,
    SERIAL_EPOCH,
    TableFormatError,
    TableRejected,
    TabularMapping,
    TabularRow,
    parse_table,
    validate_table,
)

PROPERTIES = settings(
    max_examples=80,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

MAPPINGS = {
    "us": TabularMapping(
        date_column="Date",
        metric_column="Metric",
        value_column="Amount",
        dimension_columns=["Region", "Plan"],
        thousands_separator=",",
        currency_symbols="$",
        date_formats=["%m/%d/%Y"],
    ),
    "eu": TabularMapping(
        date_column="Datum",
        metric="umsatz",
        value_column="Betrag",
        dimension_columns=["Region"],
        thousands_separator=".",
        decimal_separator=",",
        currency_symbols="€",
        date_formats=["%d.%m.%Y"],
    ),
    "plain": TabularMapping(date_column="date", metric_column="metric", value_column="value"),
}

# Text a user or a spreadsheet may put in a cell: anything, plus shapes near the rules.
TRICKY_TEXT = st.sampled_from(
    [
        "",
        " ",
        "=SUM(A1:A3)",
        "+1",
        "-",
        "@cmd",
        "1e400",
        "-1e-400",
        "NaN",
        "inf",
        "1,234.5",
        "1.234,5",
        "(3)",
        "($1,000)",
        "12%",
        "$",
        "€ 5",
        "1 234",
        "٣",
        "2024-02-30",
        "2024-13-01",
        "12/31/2024",
        "31.12.2024",
        "9" * 400,
        "0x10",
        "1_000",
        "\u2212" + "5",
        "\x00",
        "\r\n",
        '"',
        "Sign Ups",
        "mrr",
        "a" * 5000,
    ]
)
TEXT_CELL = st.one_of(
    st.text(max_size=30),
    TRICKY_TEXT,
    st.integers().map(str),
    st.floats().map(str),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
)
# What the Sheets API's UNFORMATTED_VALUE can hand over, plus text.
TYPED_CELL = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.integers(-(10**6), 10**6),
    st.sampled_from([10**309, -(10**400), 10**5000]),  # beyond a float; beyond int -> str
    TEXT_CELL,
)


def _header(mapping: TabularMapping) -> st.SearchStrategy[list[str]]:
    """Usually the mapped columns (shuffled, among extras), sometimes any names at all."""
    mapped = st.permutations([*mapping.columns, "Notes"])
    return st.one_of(mapped, mapped, st.lists(TEXT_CELL, max_size=8))


@st.composite
def any_table(draw, cell: st.SearchStrategy[object]):
    mapping = MAPPINGS[draw(st.sampled_from(sorted(MAPPINGS)))]
    header = draw(_header(mapping))
    width = len(header)
    first_line = draw(st.integers(1, 5)) + 1
    gaps = draw(st.lists(st.integers(1, 3), max_size=25))  # lines a row takes (quoted newlines)
    rows, line = [], first_line
    for gap in gaps:
        rows.append((line, draw(st.lists(cell, min_size=0, max_size=width + 2))))
        line += gap
    return mapping, header, rows


def check_any_table(mapping: TabularMapping, header: Sequence[object], rows) -> None:
    lines = {line for line, _ in rows}
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.txt"
        try:
            count = validate_table(header, rows, mapping, source="t", report=report)
        except TableFormatError:
            return
        except TableRejected as rejected:
            assert rejected.errors and rejected.error_count >= len(rejected.errors)
            assert {error.line for error in rejected.errors} <= lines
            assert len(str(rejected).encode()) < 8 * 1024
            if rejected.report is not None:
                text = rejected.report.read_text(encoding="utf-8")
                listed = [line for line in text.splitlines() if line.startswith("line ")]
                assert len(listed) == rejected.error_count  # every one: few rows
                assert {int(re.match(r"line (\d+)", entry)[1]) for entry in listed} <= lines
            assert [p.name for p in Path(folder).iterdir()] in ([], ["report.txt"])
            return
        assert list(Path(folder).iterdir()) == []
    parsed = list(parse_table(header, rows, mapping, source="t"))
    assert len(parsed) == count
    assert [row.line for row in parsed] == sorted({row.line for row in parsed})
    assert {row.line for row in parsed} <= lines
    assert all(math.isfinite(row.value) for row in parsed)


@PROPERTIES
@given(any_table(TEXT_CELL))
def test_any_text_table_is_stored_or_rejected_by_line(table) -> None:
    check_any_table(*table)


@PROPERTIES
@given(any_table(TYPED_CELL))
def test_any_typed_sheet_is_stored_or_rejected_by_line(table) -> None:
    check_any_table(*table)


# --- tables whose truth the generator knows --------------------------------------------------

DAYS = st.dates(datetime.date(1900, 1, 1), datetime.date(2200, 12, 31))
METRICS = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)
DIMENSION = st.one_of(st.just(""), st.text(max_size=12))
CENTS = st.integers(-(10**14), 10**14)


def us_amount(cents: int, style: int) -> str:
    """A US-formatted amount: plain, grouped, with a currency sign, or negative in ()."""
    whole, fraction = divmod(abs(cents), 100)
    grouped = f"{whole:,}"
    digits = [f"{whole}.{fraction:02}", f"{grouped}.{fraction:02}", f"${grouped}.{fraction:02}"]
    text = digits[style % 3]
    if cents < 0:
        return f"({text})" if style >= 3 else f"-{text}"
    return text


def eu_amount(cents: int, style: int) -> str:
    whole, fraction = divmod(abs(cents), 100)
    grouped = f"{whole:,}".replace(",", ".")
    text = [f"{whole},{fraction:02}", f"{grouped},{fraction:02}", f"{grouped},{fraction:02} €"][
        style % 3
    ]
    return f"-{text}" if cents < 0 else text


def expected_value(cents: int) -> float:
    return float(Decimal(cents).scaleb(-2)) + 0.0


@st.composite
def known_table(draw, typed: bool = False):
    """A valid table, its expected rows, and how to break chosen rows of it."""
    name = draw(st.sampled_from(["us", "eu"]))
    mapping = MAPPINGS[name]
    header = draw(st.permutations([*mapping.columns, "Notes"]))
    keys = draw(
        st.lists(
            st.tuples(DAYS, METRICS, DIMENSION, DIMENSION),
            min_size=1,
            max_size=30,
            unique_by=lambda k: (k[0], k[1] if name == "us" else "", k[2].strip(), k[3].strip()),
        )
    )
    rows, expected, line = [], [], 2
    for day, metric, region, plan in keys:
        cents, style = draw(CENTS), draw(st.integers(0, 5))
        line += draw(st.integers(0, 2))  # blank lines, or rows spanning lines, in between
        if name == "us":
            metric_value, dims = metric, {"Region": region.strip(), "Plan": plan.strip()}
            amount: object = us_amount(cents, style)
            date_text: object = day.isoformat() if style % 2 else day.strftime("%m/%d/%Y")
        else:
            metric_value, dims = "umsatz", {"Region": region.strip()}
            amount = eu_amount(cents, style)
            date_text = day.isoformat() if style % 2 else day.strftime("%d.%m.%Y")
        if typed and style % 2:  # the Sheets API's typed values
            amount = expected_value(cents)
            date_text = (day - SERIAL_EPOCH).days + draw(st.floats(0, 0.999))
        by_column = {
            mapping.date_column: date_text,
            mapping.value_column: amount,
            "Metric": metric,
            "Region": region,
            "Plan": plan,
            "Notes": draw(st.text(max_size=5)),
        }
        rows.append((line, [by_column[column] for column in header]))
        expected.append(TabularRow(line, day, metric_value, expected_value(cents), dims))
        line += 1
    return mapping, header, rows, expected


@PROPERTIES
@given(known_table())
def test_a_valid_table_is_read_exactly_as_written(table) -> None:
    mapping, header, rows, expected = table
    assert validate_table(header, rows, mapping, source="t") == len(expected)
    assert list(parse_table(header, rows, mapping, source="t")) == expected


@PROPERTIES
@given(known_table(typed=True))
def test_a_valid_typed_sheet_is_read_exactly_as_written(table) -> None:
    mapping, header, rows, expected = table
    assert validate_table(header, rows, mapping, source="t") == len(expected)
    assert list(parse_table(header, rows, mapping, source="t")) == expected


BREAKAGES = {  # column role -> a cell that is never valid there
    "date": ["2024-13-01", "yesterday", "", "=TODAY()"],
    "value": ["x", "", "=A1*2", "1e999", "--5", "NaN"],
}


@PROPERTIES
@given(known_table(), st.data())
def test_broken_rows_are_rejected_by_exactly_their_lines(table, data) -> None:
    mapping, header, rows, _ = table
    broken = data.draw(st.sets(st.integers(0, len(rows) - 1), min_size=1))
    for index in broken:
        role = data.draw(st.sampled_from(sorted(BREAKAGES)))
        column = mapping.date_column if role == "date" else mapping.value_column
        cells = list(rows[index][1])
        cells[header.index(column)] = data.draw(st.sampled_from(BREAKAGES[role]))
        rows[index] = (rows[index][0], cells)
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "r.txt"
        try:
            validate_table(header, rows, mapping, source="t", report=report)
        except TableRejected as rejected:
            assert rejected.bad_rows == len(broken)
            if rejected.error_count <= MAX_ERRORS_SHOWN:
                reported = {error.line for error in rejected.errors}
            else:
                listed = report.read_text(encoding="utf-8").splitlines()[1:]
                reported = {int(re.match(r"line (\d+)", entry)[1]) for entry in listed}
            assert reported == {rows[index][0] for index in broken}
        else:
            raise AssertionError("a table with broken rows was accepted")
