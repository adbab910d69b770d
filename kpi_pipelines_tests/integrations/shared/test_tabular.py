"""The shared rules for user-submitted tables (CSV and Google Sheets)."""

from __future__ import annotations

import datetime
import itertools
import pickle
from collections.abc import Iterator, Sequence

import pydantic
import pytest

from kpi_pipelines.integrations.shared.tabular import (
    RowError,
    TableFormatError,
    TableRejected,
    TabularMapping,
    TabularRow,
    _number_format,
    metric_key_problem,
    parse_table,
    validate_table,
)

D = datetime.date


def numbered(*rows: Sequence[str], first_line: int = 2) -> list[tuple[int, Sequence[str]]]:
    """Data rows as a reader gives them: the header is line 1."""
    return list(enumerate(rows, start=first_line))


def parse(
    header: Sequence[str], rows: list[tuple[int, Sequence[str]]], **mapping: object
) -> list[TabularRow]:
    table_mapping = TabularMapping(**mapping)
    validate_table(header, rows, table_mapping, source="test")
    return list(parse_table(header, rows, table_mapping, source="test"))


def rejected(
    header: Sequence[str], rows: list[tuple[int, Sequence[str]]], **mapping: object
) -> TableRejected:
    with pytest.raises(TableRejected) as caught:
        validate_table(header, rows, TabularMapping(**mapping), source="test")
    return caught.value


FIXED = {"date_column": "date", "value_column": "value", "metric": "revenue"}


def value_of(cell: str, **mapping: object) -> float:
    (row,) = parse(["date", "value"], numbered(["2024-01-31", cell]), **{**FIXED, **mapping})
    return row.value


def value_error(cell: str, **mapping: object) -> str:
    error = rejected(["date", "value"], numbered(["2024-01-31", cell]), **{**FIXED, **mapping})
    (only,) = error.errors
    assert (only.line, only.column) == (2, "value")
    return only.reason


# --- the mapping ---------------------------------------------------------------------------


def test_mapping_round_trips_as_json() -> None:
    mapping = TabularMapping(
        date_column="Day",
        value_column="Amount",
        metric_column="Metric",
        dimension_columns=["Region", "Plan"],
        date_formats=["%d/%m/%Y"],
        thousands_separator=".",
        decimal_separator=",",
        currency_symbols="€$",
    )
    assert TabularMapping.model_validate_json(mapping.model_dump_json()) == mapping
    assert mapping.columns == ["Day", "Amount", "Metric", "Region", "Plan"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"metric": None}, "set exactly one of metric_column"),
        ({"metric_column": "kind"}, "set exactly one of metric_column"),
        (
            {"metric": "Monthly Revenue"},
            "'Monthly Revenue' is not a metric key; use lowercase snake_case such as "
            "'monthly_revenue'",
        ),
        (
            {"thousands_separator": ".", "decimal_separator": "."},
            "thousands_separator and decimal_separator are both '.'",
        ),
        ({"decimal_separator": ";"}, "decimal_separator ';' is not supported"),
        ({"thousands_separator": "_"}, "thousands_separator '_' is not supported"),
        ({"currency_symbols": "USD"}, "'U' is not a currency symbol"),
        ({"currency_symbols": "$-"}, "'-' is not a currency symbol"),
        ({"date_formats": ["%d/%m"]}, "date format '%d/%m' does not identify a full date"),
        ({"date_formats": ["%Q"]}, "date format '%Q' does not identify a full date"),
        ({"dimension_columns": ["date"]}, "column 'date' is mapped twice"),
        ({"value_column": "date"}, "column 'date' is mapped twice"),
        ({"date_column": "  "}, "a column name must not be empty"),
        ({"sheet": "x"}, "Extra inputs are not permitted"),
    ],
)
def test_mapping_rejects_mistakes_with_clear_messages(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(pydantic.ValidationError, match=message.replace("(", r"\(")):
        TabularMapping(**{**FIXED, **fields})


def test_metric_key_problem_suggests_snake_case() -> None:
    assert metric_key_problem("mrr") is None
    assert metric_key_problem("ad_spend_2") is None
    assert "such as 'monthly_revenue'" in metric_key_problem("monthlyRevenue")
    assert "such as 'umsatz_marz'" in metric_key_problem("Umsatz März")
    assert "such as 'm_2024_sales'" in metric_key_problem("2024 sales")
    assert "starting with a letter" in metric_key_problem("€€")


# --- numbers -------------------------------------------------------------------------------

US = {"thousands_separator": ",", "currency_symbols": "$€£"}
EU = {"thousands_separator": ".", "decimal_separator": ",", "currency_symbols": "€"}


@pytest.mark.parametrize(
    ("cell", "mapping", "expected"),
    [
        ("42", {}, 42.0),
        ("  -3.5  ", {}, -3.5),
        ("+5", {}, 5.0),
        (".5", {}, 0.5),
        ("5.", {}, 5.0),
        ("1.5E+03", {}, 1500.0),
        ("\u22123", {}, -3.0),  # the Unicode minus sign some locales format with
        ("1,200", US, 1200.0),
        ("1,234,567.89", US, 1234567.89),
        ("$1,200.50", US, 1200.5),
        ("$ 1,200.50", US, 1200.5),
        ("-$1,200.50", US, -1200.5),
        ("$-1,200.50", US, -1200.5),
        ("1200 €", US, 1200.0),
        ("(1,200)", US, -1200.0),
        ("($1,200.00)", US, -1200.0),
        ("$(7)", US, -7.0),
        ("1.200,50 €", EU, 1200.5),
        ("-1.200,50 €", EU, -1200.5),
        ("1.234.567", EU, 1234567.0),
        ("1200,5", EU, 1200.5),
        ("1 200,50", {"thousands_separator": " ", "decimal_separator": ","}, 1200.5),
        # Spreadsheets format French numbers with (narrow) no-break spaces.
        ("1\u202f200,50", {"thousands_separator": " ", "decimal_separator": ","}, 1200.5),
        ("1'200.50", {"thousands_separator": "'"}, 1200.5),
        ("1\u2019200.50", {"thousands_separator": "'"}, 1200.5),
        ("12.5%", {}, 0.125),
        ("-0.1%", {}, -0.001),
        ("(12,5 %)", EU, -0.125),
        ("1e-400", {}, 0.0),
        ("-0", {}, 0.0),
        ("- $ 0.0", US, 0.0),
        ("$ -12", US, -12.0),
        ("1 200,50 €", {**EU, "thousands_separator": " "}, 1200.5),
    ],
)
def test_numbers_the_mapping_allows(cell: str, mapping: dict[str, object], expected: float) -> None:
    assert value_of(cell, **mapping) == expected
    # The fast paths for common shapes must agree with the full grammar.
    full_grammar = _number_format(TabularMapping(**{**FIXED, **mapping}))._parse(cell.strip())
    assert str(full_grammar) == str(expected)


@pytest.mark.parametrize(
    ("cell", "mapping", "reason"),
    [
        ("", {}, "value is empty"),
        ("   ", {}, "value is empty"),
        ("12,5x", US, "'12,5x' is not a number"),
        ("abc", {}, "'abc' is not a number"),
        ("-", {}, "'-' is not a number"),
        ("nan", {}, "'nan' is not a number"),
        ("inf", {}, "'inf' is not a number"),
        ("1e999", {}, "'1e999' is not a finite number"),
        ("9" * 400, {}, "is not a finite number"),
        ("$" + "9" * 400, US, "is not a finite number"),
        ("1e9999999%", {}, "is not a finite number"),
        ("1e99999999999999999999", {}, "is not a number"),
        (
            "1,200",
            {},
            "',' is not allowed there (the mapping has decimal separator '.' and no thousands separator)",
        ),
        ("12,5", {}, "',' is not allowed there"),
        ("1 200", {}, "' ' is not allowed there"),
        ("1,20", US, "thousands separator ',' is misplaced (groups of 3 digits are expected"),
        ("1,2345", US, "thousands separator ',' is misplaced"),
        ("1.5", EU, "thousands separator '.' is misplaced"),
        ("1.2.3", US, "'.' is not allowed there"),
        ("$5", {}, "currency symbol '$' is not allowed by the mapping (currency_symbols: none)"),
        ("-$5", {}, "currency symbol '$' is not allowed"),
        (
            "¥5",
            US,
            "currency symbol '¥' is not allowed by the mapping (currency_symbols: only '$€£')",
        ),
        ("$5€", US, "more than one currency symbol"),
        ("(-5)", US, "use one minus sign or parentheses"),
        ("((5))", US, "unbalanced parentheses"),
        ("(5", US, "unbalanced parentheses"),
        ("$--5", US, "use one minus sign or parentheses"),
        ("--5", {}, "looks like a spreadsheet formula"),
        ("5-", {}, "'5-' is not a number"),
        ("$12%", US, "'$12%' is not a number"),
        ("١٢", {}, "is not a number"),  # digits, but not ASCII ones
    ],
)
def test_numbers_rejected_with_reason(cell: str, mapping: dict[str, object], reason: str) -> None:
    assert reason in value_error(cell, **mapping)


@pytest.mark.parametrize(
    "cell", ["=SUM(A1:A3)", "=5", "@cmd", "+1+2", "-2+3", "+cmd|' /C calc'!A0"]
)
def test_formula_values_are_rejected_never_evaluated(cell: str) -> None:
    assert value_error(cell, **US) == "looks like a spreadsheet formula; only numbers are accepted"


def test_negative_zero_is_zero() -> None:
    assert str(value_of("(0)", **US)) == "0.0"
    assert str(value_of("-0.0", **US)) == "0.0"


def test_formula_dimension_values_stay_text() -> None:
    (row,) = parse(
        ["date", "value", "campaign"],
        numbered(["2024-01-31", "5", ' =HYPERLINK("http://x") ']),
        **FIXED,
        dimension_columns=["campaign"],
    )
    assert row.dimensions == {"campaign": '=HYPERLINK("http://x")'}


# --- dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "formats", "expected"),
    [
        ("2024-01-31", [], D(2024, 1, 31)),
        (" 2024-01-31 ", [], D(2024, 1, 31)),
        ("2024-01-31T23:30:00", [], D(2024, 1, 31)),
        ("2024-01-31T23:30:00-05:00", [], D(2024, 1, 31)),  # the date as written
        ("2024-01-31 08:00:00Z", [], D(2024, 1, 31)),
        ("31/01/2024", ["%d/%m/%Y"], D(2024, 1, 31)),
        ("01/31/2024", ["%d/%m/%Y", "%m/%d/%Y"], D(2024, 1, 31)),
        ("2024-01-31", ["%d/%m/%Y"], D(2024, 1, 31)),  # ISO is always tried first
        ("Jan 31, 2024", ["%b %d, %Y"], D(2024, 1, 31)),
        ("31.01.24", ["%d.%m.%y"], D(2024, 1, 31)),
    ],
)
def test_dates_iso_and_configured_formats(
    cell: str, formats: list[str], expected: datetime.date
) -> None:
    (row,) = parse(["date", "value"], numbered([cell, "1"]), **FIXED, date_formats=formats)
    assert row.day == expected


@pytest.mark.parametrize(
    ("cell", "formats", "reason"),
    [
        ("", [], "date is empty"),
        ("31/01/2024", [], "'31/01/2024' is not a date; expected YYYY-MM-DD"),
        (
            "2024/01/31",
            ["%d/%m/%Y", "%m/%d/%Y"],
            "'2024/01/31' is not a date; expected YYYY-MM-DD or '%d/%m/%Y' or '%m/%d/%Y'",
        ),
        ("2024-02-30", [], "'2024-02-30' is not a valid date (day is out of range for month)"),
        ("30/02/2024", ["%d/%m/%Y"], "'30/02/2024' is not a valid date (day is out of range"),
        ("20240131", [], "is not a date"),
        ("2024-01-31 later", [], "'2024-01-31 later' is not a date; expected YYYY-MM-DD"),
    ],
)
def test_bad_dates(cell: str, formats: list[str], reason: str) -> None:
    error = rejected(["date", "value"], numbered([cell, "1"]), **FIXED, date_formats=formats)
    (only,) = error.errors
    assert only.column == "date"
    assert reason in only.reason


# --- metrics and dimensions ----------------------------------------------------------------

BY_COLUMN = {"date_column": "date", "value_column": "value", "metric_column": "metric"}


def test_metric_column_and_dimensions_in_mapping_order() -> None:
    rows = parse(
        ["plan", "date", "metric", "value", "region", "notes"],
        numbered(
            ["pro", "2024-01-31", "mrr", "100", " EU ", "ignored"],
            ["", "2024-01-31", "active_users", "3", "US"],
        ),
        **BY_COLUMN,
        dimension_columns=["region", "plan"],
    )
    assert rows == [
        TabularRow(2, D(2024, 1, 31), "mrr", 100.0, {"region": "EU", "plan": "pro"}),
        TabularRow(3, D(2024, 1, 31), "active_users", 3.0, {"region": "US", "plan": ""}),
    ]
    assert list(rows[0].dimensions) == ["region", "plan"]


def test_metric_cells_must_be_snake_case() -> None:
    error = rejected(
        ["date", "metric", "value"],
        numbered(["2024-01-31", "Monthly Revenue", "1"], ["2024-01-31", "", "1"]),
        **BY_COLUMN,
    )
    assert [str(e) for e in error.errors] == [
        "line 2, column 'metric': 'Monthly Revenue' is not a metric key; use lowercase "
        "snake_case such as 'monthly_revenue'",
        "line 3, column 'metric': metric is empty",
    ]


def test_fixed_metric_applies_to_every_row() -> None:
    rows = parse(["date", "value"], numbered(["2024-01-30", "1"], ["2024-01-31", "2"]), **FIXED)
    assert {row.metric for row in rows} == {"revenue"}


# --- row shapes ----------------------------------------------------------------------------


def test_ragged_rows_read_missing_trailing_cells_as_empty() -> None:
    rows = parse(
        ["date", "value", "region", "plan"],
        numbered(["2024-01-31", "1", "EU"], ["2024-02-01", "2"]),
        **FIXED,
        dimension_columns=["region", "plan"],
    )
    assert [row.dimensions for row in rows] == [
        {"region": "EU", "plan": ""},
        {"region": "", "plan": ""},
    ]


def test_ragged_row_missing_the_value_is_an_error() -> None:
    error = rejected(["date", "region", "value"], numbered(["2024-01-31", "EU"]), **FIXED)
    assert [str(e) for e in error.errors] == ["line 2, column 'value': value is empty"]


def test_more_cells_than_the_header_is_an_error() -> None:
    error = rejected(
        ["date", "value"], numbered(["2024-01-31", "1", "200"], ["2024-02-01", "2"]), **FIXED
    )
    assert [str(e) for e in error.errors] == [
        "line 2: has 3 cells but the header has 2 columns (an unquoted delimiter inside a value?)"
    ]


def test_trailing_empty_extra_cells_are_harmless() -> None:
    (row,) = parse(["date", "value"], numbered(["2024-01-31", "1", "", " "]), **FIXED)
    assert row.value == 1.0


def test_fully_empty_rows_are_skipped_and_lines_kept() -> None:
    rows = parse(
        ["date", "value"],
        [
            (2, []),
            (3, ["", ""]),
            (4, ["2024-01-31", "1"]),
            (5, [" ", ""]),
            (6, ["2024-02-01", "2"]),
        ],
        **FIXED,
    )
    assert [row.line for row in rows] == [4, 6]


def test_non_string_cells_from_a_sheet() -> None:
    (row,) = parse(
        ["date", "value", "n"], [(2, ["2024-01-31", 12.5, None])], **FIXED, dimension_columns=["n"]
    )
    assert (row.value, row.dimensions) == (12.5, {"n": ""})


# --- duplicates ----------------------------------------------------------------------------


def test_duplicate_keys_name_the_earlier_line() -> None:
    error = rejected(
        ["date", "metric", "value", "region"],
        numbered(
            ["2024-01-31", "mrr", "1", "EU"],
            ["2024-01-31", "mrr", "2", "US"],
            ["2024-01-31", "arr", "3", "EU"],
            ["2024-01-31T10:00:00", "mrr", "4", " EU"],
        ),
        **BY_COLUMN,
        dimension_columns=["region"],
    )
    assert [str(e) for e in error.errors] == [
        "line 5: duplicates line 2 (same date, metric and dimensions)"
    ]


def test_invalid_rows_do_not_count_as_earlier_keys() -> None:
    error = rejected(["date", "value"], numbered(["2024-01-31", "x"], ["2024-01-31", "1"]), **FIXED)
    assert [e.line for e in error.errors] == [2]


# --- whole-table problems ------------------------------------------------------------------


def test_header_only_table() -> None:
    with pytest.raises(TableFormatError, match=r"^test has a header row but no data rows$"):
        validate_table(
            ["date", "value"], numbered(["", ""]), TabularMapping(**FIXED), source="test"
        )


def test_empty_header() -> None:
    with pytest.raises(TableFormatError, match="test is empty: there is no header row"):
        validate_table(["", " "], [], TabularMapping(**FIXED), source="test")


def test_missing_columns_are_named_with_the_columns_present() -> None:
    mapping = TabularMapping(**BY_COLUMN, dimension_columns=["region"])
    with pytest.raises(TableFormatError) as caught:
        parse_table(["Date", "value", "kind"], [], mapping, source="test")
    assert str(caught.value) == (
        "test is missing mapped columns 'date', 'metric', 'region'; the header has: "
        "'Date', 'value', 'kind' (names are case-sensitive: 'date' -> 'Date'?)"
    )


def test_duplicated_header_names() -> None:
    with pytest.raises(TableFormatError) as caught:
        validate_table(
            ["date", "value", "date ", "", ""], [], TabularMapping(**FIXED), source="test"
        )
    assert str(caught.value) == (
        "test names a column more than once in its header: 'date' (columns 1, 3); rename them"
    )


# --- all-or-nothing ------------------------------------------------------------------------


def test_every_bad_row_is_listed_with_its_line() -> None:
    error = rejected(
        ["date", "value"],
        numbered(
            ["2024-01-01", "1"],
            ["2024-01-02", "12,5x"],
            ["2024-01-03", "3"],
            ["not a date", ""],
            ["2024-01-05", "5"],
            ["2024-01-06", "=1+1"],
        ),
        **FIXED,
        **US,
    )
    assert [(e.line, e.column) for e in error.errors] == [
        (3, "value"),
        (5, "date"),
        (5, "value"),
        (7, "value"),
    ]
    assert str(error) == (
        "test was rejected and nothing was imported: 3 invalid rows (4 errors)\n"
        "line 3, column 'value': '12,5x' is not a number\n"
        "line 5, column 'date': 'not a date' is not a date; expected YYYY-MM-DD\n"
        "line 5, column 'value': value is empty\n"
        "line 7, column 'value': looks like a spreadsheet formula; only numbers are accepted"
    )
    assert error.source == "test"
    assert isinstance(error, ValueError)


def test_errors_survive_pickling() -> None:
    error = TableRejected("sheet!A1:D9", [RowError(7, "amount", "'12,5x' is not a number")])
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.source, copy.errors, str(copy)) == (error.source, error.errors, str(error))
    assert str(copy.errors[0]) == "line 7, column 'amount': '12,5x' is not a number"
    fmt = pickle.loads(pickle.dumps(TableFormatError("a.csv", "is empty")))
    assert (str(fmt), fmt.problem) == ("a.csv is empty", "is empty")


def test_validate_returns_the_row_count() -> None:
    rows = numbered(["2024-01-01", "1"], [], ["2024-01-02", "2"])
    assert validate_table(["date", "value"], rows, TabularMapping(**FIXED), source="t") == 2


def test_parse_table_streams_and_stops_at_the_first_bad_row() -> None:
    def endless() -> Iterator[tuple[int, list[str]]]:
        for line in itertools.count(2):
            yield line, [(D(2024, 1, 1) + datetime.timedelta(days=line)).isoformat(), str(line)]

    stream = parse_table(["date", "value"], endless(), TabularMapping(**FIXED), source="t")
    assert [row.value for row in itertools.islice(stream, 3)] == [2.0, 3.0, 4.0]

    bad = numbered(["2024-01-01", "1"], ["2024-01-02", "x"], ["2024-01-03", "y"])
    stream = parse_table(["date", "value"], bad, TabularMapping(**FIXED), source="t")
    assert next(stream).line == 2
    with pytest.raises(TableRejected) as caught:
        next(stream)
    assert [e.line for e in caught.value.errors] == [3]


def test_parse_table_checks_the_header_before_iteration() -> None:
    with pytest.raises(TableFormatError, match="missing mapped column 'value'"):
        parse_table(["date"], [], TabularMapping(**FIXED), source="t")
