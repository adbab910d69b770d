"""Reading users' CSV files: encoding, delimiters, quoting, line numbers and limits."""

from __future__ import annotations

import datetime
import itertools
import os
from pathlib import Path

import pytest

from kpi_pipelines.integrations.csv_upload import parsing
from kpi_pipelines.integrations.csv_upload.parsing import CsvFileError, CsvTable, read_csv
from kpi_pipelines.integrations.shared.tabular import (
    TableFormatError,
    TableRejected,
    TabularMapping,
    TabularRow,
)

D = datetime.date
MB = 1024 * 1024
LIMIT = 50 * MB

FIXED = TabularMapping(date_column="date", value_column="value", metric="revenue")
US = TabularMapping(
    date_column="date",
    value_column="amount",
    metric_column="metric",
    dimension_columns=["region"],
    thousands_separator=",",
    currency_symbols="$",
)


def write(tmp_path: Path, content: str | bytes, name: str = "upload.csv") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_bytes(content.encode("utf-8"))
    else:
        path.write_bytes(content)
    return path


def load(path: Path, mapping: TabularMapping = FIXED, **options: object) -> list[TabularRow]:
    table = read_csv(path, mapping, max_bytes=LIMIT, **options)
    count = table.validate()
    rows = list(table.rows())
    assert len(rows) == count
    return rows


def rejection(path: Path, mapping: TabularMapping = FIXED, **options: object) -> TableRejected:
    table = read_csv(path, mapping, max_bytes=LIMIT, **options)
    with pytest.raises(TableRejected) as caught:
        table.validate()
    return caught.value


def file_error(path: Path, mapping: TabularMapping = FIXED, **options: object) -> str:
    with pytest.raises(CsvFileError) as caught:
        read_csv(path, mapping, **{"max_bytes": LIMIT, **options})
    return str(caught.value)


SIMPLE = "date,value\n2024-01-01,1\n2024-01-02,2.5\n"


# --- encodings -----------------------------------------------------------------------------


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"], ids=["no-bom", "bom"])
@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_utf8_with_or_without_bom_and_any_newline(tmp_path: Path, bom: bytes, newline: str) -> None:
    content = "date,value,city\n2024-01-01,1,Zürich\n2024-01-02,2.5,São Paulo\n"
    path = write(tmp_path, bom + content.replace("\n", newline).encode())
    mapping = FIXED.model_copy(update={"dimension_columns": ["city"]})
    rows = load(path, mapping)
    assert rows == [
        TabularRow(2, D(2024, 1, 1), "revenue", 1.0, {"city": "Zürich"}),
        TabularRow(3, D(2024, 1, 2), "revenue", 2.5, {"city": "São Paulo"}),
    ]


@pytest.mark.parametrize(
    ("encoding", "mark"), [("utf-16", None), ("utf-16-be", "FE FF"), ("utf-32", "FF FE 00 00")]
)
def test_utf16_and_utf32_with_a_bom_are_named(tmp_path: Path, encoding: str, mark: str) -> None:
    data = SIMPLE.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    name = "UTF-32" if "32" in encoding else "UTF-16"
    message = file_error(write(tmp_path, data))
    assert message.startswith(f"upload.csv is {name} encoded (byte order mark ")
    if mark:
        assert f"(byte order mark {mark})" in message
    assert "save it as UTF-8" in message


def test_utf16_without_a_bom_is_caught_by_its_nul_bytes(tmp_path: Path) -> None:
    message = file_error(write(tmp_path, SIMPLE.encode("utf-16-le")))
    assert message.startswith("upload.csv contains a NUL byte at byte offset 1 (line 1)")
    assert "save it as UTF-8" in message


def test_latin1_file_names_the_offset_and_line(tmp_path: Path) -> None:
    content = "date,value,city\n2024-01-01,1,Paris\n2024-01-02,2,Besançon\n"
    data = content.encode("latin-1")
    message = file_error(
        write(tmp_path, data), FIXED.model_copy(update={"dimension_columns": ["city"]})
    )
    offset = data.index("ç".encode("latin-1"))
    assert message == (
        f"upload.csv is not UTF-8: byte 0xE7 at byte offset {offset} (line 3) is not valid "
        "UTF-8 (in Windows-1252/Latin-1 it would be 'ç'); save it as UTF-8 (in Excel: Save As "
        "> 'CSV UTF-8 (Comma delimited)')"
    )


def test_encoding_is_checked_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsing, "_CHUNK_BYTES", 5)  # multibyte characters straddle chunks
    good = "date,value,city\n" + "".join(f"2024-01-{d:02},{d},Zürich €\n" for d in range(1, 20))
    mapping = FIXED.model_copy(update={"dimension_columns": ["city"]})
    assert len(load(write(tmp_path, good), mapping)) == 19

    bad = good.encode() + b"2024-02-01,1,x\n2024-02-02,2,\x80\n"
    message = file_error(write(tmp_path, bad), mapping)
    assert f"byte 0x80 at byte offset {len(bad) - 2} (line 22)" in message


def test_truncated_utf8_at_the_end(tmp_path: Path) -> None:
    data = b"date,value\n2024-01-01,1\n\xc3"
    message = file_error(write(tmp_path, data))
    assert f"byte 0xC3 at byte offset {len(data) - 1} (line 3)" in message


def test_a_workbook_is_not_a_csv(tmp_path: Path) -> None:
    message = file_error(write(tmp_path, b"PK\x03\x04\x14\x00rest-of-zip", "report.csv"))
    assert message == (
        "report.csv is a spreadsheet workbook (.xlsx/.xls), not a CSV file; export it as CSV UTF-8"
    )


# --- file-level problems -------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    assert file_error(path) == f"nope.csv was not found (looked for {path})"


def test_a_directory_is_not_a_file(tmp_path: Path) -> None:
    (tmp_path / "dir.csv").mkdir()
    assert file_error(tmp_path / "dir.csv").startswith("dir.csv is not a file")


def test_oversized_file(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("wb") as handle:
        handle.truncate(int(61.2 * MB))  # sparse: nothing is written
    assert file_error(path) == "big.csv is 61.2 MB; the limit is 50.0 MB (KPI_CSV_MAX_BYTES)"
    small = write(tmp_path, SIMPLE)
    assert file_error(small, max_bytes=20) == (
        f"upload.csv is {len(SIMPLE)} bytes; the limit is 20 bytes (KPI_CSV_MAX_BYTES)"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "upload.csv is empty (0 bytes)"),
        (b"\xef\xbb\xbf", "upload.csv is empty: it contains only whitespace"),
        (b" \r\n\t\n\n", "upload.csv is empty: it contains only whitespace"),
        (b"\xef\xbb\xbf\n,,\n", "upload.csv is empty: it has no header row"),
    ],
)
def test_empty_files(tmp_path: Path, content: bytes, message: str) -> None:
    assert file_error(write(tmp_path, content)) == message


@pytest.mark.parametrize("content", ["date,value\n", "date,value", "date,value\r\n\r\n,\n"])
def test_header_only_file(tmp_path: Path, content: str) -> None:
    table = read_csv(write(tmp_path, content), FIXED, max_bytes=LIMIT)
    with pytest.raises(TableFormatError, match=r"^upload\.csv has a header row but no data rows$"):
        table.validate()


def test_missing_column_lists_the_header_and_the_delimiter(tmp_path: Path) -> None:
    path = write(tmp_path, "day,amount,metric\n2024-01-01,1,mrr\n")
    with pytest.raises(TableFormatError) as caught:
        read_csv(path, US, max_bytes=LIMIT)
    assert str(caught.value) == (
        "upload.csv is missing mapped columns 'date', 'region'; the header has: 'day', 'amount', "
        "'metric' (columns were split on the comma ',', detected; set the delimiter if the file "
        "uses another)"
    )


def test_duplicated_header_names(tmp_path: Path) -> None:
    path = write(tmp_path, "date,value,value\n2024-01-01,1,2\n")
    with pytest.raises(
        TableFormatError, match="names a column more than once in its header: 'value'"
    ):
        read_csv(path, FIXED, max_bytes=LIMIT)


def test_unclosed_quote_names_the_line_where_it_opens(tmp_path: Path) -> None:
    path = write(tmp_path, 'date,value,note\n2024-01-01,1,ok\n2024-01-02,2,"oops\n2024-01-03,3,x\n')
    table = read_csv(path, FIXED, max_bytes=LIMIT)
    with pytest.raises(CsvFileError) as caught:
        table.validate()
    assert str(caught.value) == (
        "upload.csv has a quoted field starting on line 3 that is never closed (a missing '\"')"
    )


def test_stray_quote(tmp_path: Path) -> None:
    path = write(tmp_path, 'date,value,note\n2024-01-01,1,"a"b\n')
    table = read_csv(path, FIXED, max_bytes=LIMIT)
    with pytest.raises(CsvFileError, match="has a stray quote on line 2"):
        table.validate()


# --- delimiters and quoting ----------------------------------------------------------------


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiter_is_detected(tmp_path: Path, delimiter: str) -> None:
    content = SIMPLE.replace(",", delimiter)
    table = read_csv(write(tmp_path, content), FIXED, max_bytes=LIMIT)
    assert table.delimiter == delimiter
    assert [row.value for row in load(table.path)] == [1.0, 2.5]


def test_european_semicolon_file(tmp_path: Path) -> None:
    content = (
        "Datum;Kennzahl;Betrag;Region\n"
        "31.01.2024;umsatz;1.200,50 €;Nord\n"
        "01.02.2024;umsatz;-1.234.567,89 €;Süd\n"
        "02.02.2024;umsatz;(3,5) €;Nord\n"
        "03.02.2024;marge;12,5%;Nord\n"
    )
    mapping = TabularMapping(
        date_column="Datum",
        value_column="Betrag",
        metric_column="Kennzahl",
        dimension_columns=["Region"],
        date_formats=["%d.%m.%Y"],
        thousands_separator=".",
        decimal_separator=",",
        currency_symbols="€",
    )
    table = read_csv(write(tmp_path, content), mapping, max_bytes=LIMIT)
    assert table.delimiter == ";"
    assert [(row.day, row.metric, row.value) for row in load(table.path, mapping)] == [
        (D(2024, 1, 31), "umsatz", 1200.5),
        (D(2024, 2, 1), "umsatz", -1234567.89),
        (D(2024, 2, 2), "umsatz", -3.5),
        (D(2024, 2, 3), "marge", 0.125),
    ]


def test_detection_prefers_the_delimiter_that_finds_the_mapped_columns(tmp_path: Path) -> None:
    # Every line has exactly one comma (in the value) and one semicolon: only the mapping
    # tells which one separates the columns.
    content = "date;value\n2024-01-01;1,5\n2024-01-02;2,5\n2024-01-03;3,5\n"
    mapping = FIXED.model_copy(update={"decimal_separator": ","})
    assert read_csv(write(tmp_path, content), mapping, max_bytes=LIMIT).delimiter == ";"


def test_detection_prefers_a_consistent_field_count(tmp_path: Path) -> None:
    # The header holds more commas, but only the semicolon splits every line alike.
    content = "x;y;note, with, commas\n1;2;3\n4;5;6\n"
    with pytest.raises(TableFormatError, match="split on the semicolon ';', detected"):
        read_csv(write(tmp_path, content), FIXED, max_bytes=LIMIT)


class _QuadraticSniffer:
    def __init__(self) -> None:
        raise AssertionError("csv.Sniffer backtracks quadratically on hostile samples")


@pytest.mark.parametrize(
    "unit", ['\n"a', ',"a', ',"a\n"a'], ids=["quote-at-line-start", "quote-after-delimiter", "both"]
)
def test_detection_is_linear_and_never_uses_the_sniffer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unit: str
) -> None:
    # Samples on which csv.Sniffer takes about a minute (64 KB): see the benchmark.
    monkeypatch.setattr(parsing.csv, "Sniffer", _QuadraticSniffer)
    hostile = (unit * 30_000)[: 64 * 1024]
    with pytest.raises(CsvFileError, match="quote"):  # not CSV, but read in linear time
        read_csv(write(tmp_path, "date,value\n" + hostile), FIXED, max_bytes=LIMIT).validate()
    assert read_csv(
        write(tmp_path, SIMPLE.replace(",", "|")), FIXED, max_bytes=LIMIT
    ).delimiter == ("|")


def test_explicit_delimiter_wins(tmp_path: Path) -> None:
    content = "date|value,x\n2024-01-01|1\n"
    path = write(tmp_path, content)
    with pytest.raises(TableFormatError) as caught:
        read_csv(path, FIXED, max_bytes=LIMIT, delimiter=",")
    assert str(caught.value) == (
        "upload.csv is missing mapped columns 'date', 'value'; the header has: 'date|value', 'x'"
    )
    table = read_csv(
        path, FIXED.model_copy(update={"value_column": "value,x"}), max_bytes=LIMIT, delimiter="|"
    )
    assert table.delimiter == "|"
    assert [row.value for row in table.rows()] == [1.0]


def test_unusable_explicit_delimiter() -> None:
    with pytest.raises(ValueError, match="delimiter 'ab' is not usable"):
        read_csv(Path("x.csv"), FIXED, max_bytes=LIMIT, delimiter="ab")


def test_quoted_fields_and_line_numbers_after_multiline_values(tmp_path: Path) -> None:
    content = (
        "date,metric,amount,region\r\n"
        '2024-01-01,mrr,"$1,200.50","North, ""East"""\r\n'
        '2024-01-02,mrr,"1,000","multi\r\nline\r\nregion"\r\n'
        "2024-01-03,mrr, $5 ,South\r\n"
        "\r\n"
        "2024-01-04,mrr,oops,South\r\n"
    )
    error = rejection(write(tmp_path, content), US)
    assert [str(e) for e in error.errors] == ["line 8, column 'amount': 'oops' is not a number"]

    path = write(tmp_path, content.replace("oops", "7"))
    rows = load(path, US)
    assert [(row.line, row.value, row.dimensions["region"]) for row in rows] == [
        (2, 1200.5, 'North, "East"'),
        (3, 1000.0, "multi\r\nline\r\nregion"),
        (6, 5.0, "South"),
        (8, 7.0, "South"),
    ]


def test_blank_lines_before_the_header_keep_physical_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, "\n\ndate,value\n2024-01-01,x\n")
    table = read_csv(path, FIXED, max_bytes=LIMIT)
    assert table.header_line == 3
    with pytest.raises(TableRejected) as caught:
        table.validate()
    assert [e.line for e in caught.value.errors] == [4]


# --- values through a file -----------------------------------------------------------------


def test_thousands_separators_and_currency_need_the_mapping(tmp_path: Path) -> None:
    content = 'date,metric,amount,region\n2024-01-01,mrr,"$1,200",EU\n2024-01-02,mrr,(300),EU\n'
    path = write(tmp_path, content)
    assert [row.value for row in load(path, US)] == [1200.0, -300.0]
    strict = US.model_copy(update={"thousands_separator": None, "currency_symbols": ""})
    error = rejection(path, strict)
    assert [str(e) for e in error.errors] == [
        "line 2, column 'amount': '$1,200' is not a number: currency symbol '$' is not allowed by "
        "the mapping (currency_symbols: none)",
    ]
    error = rejection(path, US.model_copy(update={"thousands_separator": None}))
    assert "',' is not allowed there" in error.errors[0].reason


def test_dates_iso_and_configured(tmp_path: Path) -> None:
    content = "date,value\n2024-01-31,1\n2024-02-01T09:30:00+01:00,2\n02/03/2024,3\n"
    mapping = FIXED.model_copy(update={"date_formats": ["%d/%m/%Y"]})
    assert [row.day for row in load(write(tmp_path, content), mapping)] == [
        D(2024, 1, 31),
        D(2024, 2, 1),
        D(2024, 3, 2),
    ]
    error = rejection(write(tmp_path, content))
    assert [str(e) for e in error.errors] == [
        "line 4, column 'date': '02/03/2024' is not a date; expected YYYY-MM-DD"
    ]


def test_formula_cells(tmp_path: Path) -> None:
    content = (
        "date,metric,amount,region\n"
        '2024-01-01,mrr,1,"=HYPERLINK(""http://evil"",""x"")"\n'
        "2024-01-02,mrr,=SUM(A1:A3),EU\n"
        "2024-01-03,mrr,@cmd,EU\n"
        "2024-01-04,mrr,+1+2,EU\n"
        "2024-01-05,mrr,-1,@risky\n"
    )
    error = rejection(write(tmp_path, content), US)
    assert [(e.line, e.reason) for e in error.errors] == [
        (line, "looks like a spreadsheet formula; only numbers are accepted") for line in (3, 4, 5)
    ]
    path = write(tmp_path, "".join(content.splitlines(keepends=True)[i] for i in (0, 1, 5)))
    assert [row.dimensions["region"] for row in load(path, US)] == [
        '=HYPERLINK("http://evil","x")',
        "@risky",
    ]


def test_ragged_and_overlong_rows(tmp_path: Path) -> None:
    content = "date,value,region,plan\n2024-01-01,1,EU\n2024-01-02,2\n2024-01-03,3,EU,pro,extra\n"
    mapping = FIXED.model_copy(update={"dimension_columns": ["region", "plan"]})
    error = rejection(write(tmp_path, content), mapping)
    assert [str(e) for e in error.errors] == [
        "line 4: has 5 cells but the header has 4 columns (an unquoted delimiter inside a value?)"
    ]
    rows = load(write(tmp_path, content.replace(",extra", "")), mapping)
    assert [row.dimensions for row in rows] == [
        {"region": "EU", "plan": ""},
        {"region": "", "plan": ""},
        {"region": "EU", "plan": "pro"},
    ]


def test_duplicate_keys(tmp_path: Path) -> None:
    content = (
        "date,metric,amount,region\n2024-01-01,mrr,1,EU\n2024-01-01,mrr,2,US\n2024-01-01,mrr,3,EU\n"
    )
    error = rejection(write(tmp_path, content), US)
    assert [str(e) for e in error.errors] == [
        "line 4: duplicates line 2 (same date, metric and dimensions)"
    ]


def test_three_bad_rows_are_all_listed(tmp_path: Path) -> None:
    content = (
        "date,metric,amount,region\n"
        "2024-01-01,mrr,100,EU\n"
        "2024-01-02,Monthly Revenue,100,EU\n"
        "2024-01-03,mrr,100,EU\n"
        '2024-01-04,mrr,"12,5x",EU\n'
        "2024-13-05,mrr,100,EU\n"
        "2024-01-06,mrr,100,EU\n"
    )
    error = rejection(write(tmp_path, content, "sales.csv"), US)
    assert str(error) == (
        "sales.csv was rejected and nothing was imported: 3 invalid rows\n"
        "line 3, column 'metric': 'Monthly Revenue' is not a metric key; use lowercase "
        "snake_case such as 'monthly_revenue'\n"
        "line 5, column 'amount': '12,5x' is not a number\n"
        "line 6, column 'date': '2024-13-05' is not a valid date (month must be in 1..12)"
    )


# --- the two passes ------------------------------------------------------------------------


def test_rows_validates_first_and_yields_nothing_from_a_bad_file(tmp_path: Path) -> None:
    content = "date,value\n2024-01-01,1\n2024-01-02,x\n2024-01-03,y\n"
    table = read_csv(write(tmp_path, content), FIXED, max_bytes=LIMIT)
    with pytest.raises(TableRejected) as caught:
        table.rows()
    assert [e.line for e in caught.value.errors] == [3, 4]


def test_rows_stream_lazily(tmp_path: Path) -> None:
    start = D(2020, 1, 1)
    lines = (f"{start + datetime.timedelta(days=i)},{i}\n" for i in range(5000))
    path = write(tmp_path, "date,value\n" + "".join(lines))
    table = read_csv(path, FIXED, max_bytes=LIMIT)
    assert isinstance(table, CsvTable)
    assert table.validate() == 5000
    stream = table.rows()
    assert [row.value for row in itertools.islice(stream, 2)] == [0.0, 1.0]
    stream.close()  # stopping early is fine
    assert sum(1 for _ in table.rows()) == 5000


def test_a_file_changed_after_validation_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, SIMPLE)
    table = read_csv(path, FIXED, max_bytes=LIMIT)
    table.validate()
    path.write_text(SIMPLE + "2024-01-03,oops\n")
    os.utime(path, ns=(0, 0))
    with pytest.raises(CsvFileError, match="changed while it was being read"):
        list(table.rows())


def test_a_file_changed_after_opening_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, SIMPLE)
    table = read_csv(path, FIXED, max_bytes=LIMIT)
    path.write_text("date,value\n2024-01-01,1\n")
    os.utime(path, ns=(0, 0))
    with pytest.raises(CsvFileError, match=r"upload\.csv changed while it was being read"):
        table.validate()
    assert table.size_bytes == len(SIMPLE)


def test_source_overrides_the_name_in_messages(tmp_path: Path) -> None:
    path = write(tmp_path, "date,value\n2024-01-01,x\n")
    error = rejection(path, source="workspace-7/march.csv")
    assert str(error).startswith("workspace-7/march.csv was rejected")
