"""Parsing and validation of user-submitted tables (CSV uploads and Google Sheets).

A user's table is all-or-nothing: `validate_table` reads every row and raises
`TableRejected` with every bad row's line number and reason, and only then does the caller
stream the rows again with `parse_table` to write them. Both passes keep one row in memory
at a time; the only state that grows with the table is the set of keys seen so far (to
report duplicates). Errors are written to a bounded report file as they are found
(rejection_reports.py); the exception keeps the counts and the first few, so its message
stays a few KB whatever the table (the tenant's text in it is cut, see `shown`).

Cells are text (a CSV file, a sheet read as FORMATTED_VALUE) or, from the Sheets API read
as UNFORMATTED_VALUE, typed JSON values: a number in the value column is taken as it is
(no separators or currency to interpret), and a number in the date column is a spreadsheet
date serial number (days since 1899-12-30; a time-of-day fraction is dropped). Text cells
follow the mapping's rules either way, so CSV behaviour does not depend on this.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Protocol, TypeGuard

import pydantic

from kpi_pipelines.integrations.shared.connection_settings import TenantName
from kpi_pipelines.integrations.shared.rejection_reports import MAX_REPORTED_ROWS, ErrorReport
from kpi_pipelines.models import MAX_METRIC_CHARS, breakdown_problem

__all__ = [
    "MAX_ERRORS_SHOWN",
    "METRIC_KEY_PATTERN",
    "NumberedRows",
    "RowError",
    "Table",
    "TableFormatError",
    "TableRejected",
    "TabularMapping",
    "TabularRow",
    "metric_key_problem",
    "parse_table",
    "serial_date",
    "shown",
    "shown_list",
    "validate_table",
]

METRIC_KEY_PATTERN = re.compile(r"[a-z][a-z0-9_]*")

_THOUSANDS_SEPARATORS = {",", ".", " ", "'", "\u2019", "\u00a0", "\u202f"}
_DECIMAL_SEPARATORS = {".", ","}
# Spreadsheets format numbers with look-alikes of the configured separator: French uses
# (narrow) no-break spaces for " ", Swiss formatting uses a typographic apostrophe for "'".
_SEPARATOR_ALIASES = {
    " ": " \u00a0\u202f",
    "\u00a0": " \u00a0\u202f",
    "\u202f": " \u00a0\u202f",
    "'": "'\u2019",
    "\u2019": "'\u2019",
}
_MINUS_SIGNS = "-\u2212"
_FORMULA_STARTS = "=+-@"
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ].+)?")


# Tenant text in messages is cut to this many characters, and lists to this many items, so
# that a message stays a few KB whatever the table holds.
SHOWN_CHARS = 40
SHOWN_NAMES = 20
MAX_ERRORS_SHOWN = 20  # errors listed in a message; the report lists the first rows


def shown(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text` quoted for a message, cut after `limit` characters."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def shown_list(names: Sequence[str], limit: int = SHOWN_NAMES, separator: str = ", ") -> str:
    """Names quoted and separated, at most `limit` of them, then "and N more"."""
    listed = separator.join(shown(name) for name in names[:limit])
    if len(names) > limit:
        listed += f" and {len(names) - limit} more"
    return listed


def metric_key_problem(key: str) -> str | None:
    """Why `key` is not a metric key (lowercase snake_case), or None when it is one."""
    if len(key) > MAX_METRIC_CHARS:
        return f"{shown(key)} is not a metric key: at most {MAX_METRIC_CHARS} characters"
    if METRIC_KEY_PATTERN.fullmatch(key):
        return None
    suggestion = _snake_case(key)
    if suggestion:
        return (
            f"{shown(key)} is not a metric key; use lowercase snake_case such as"
            f" {shown(suggestion)}"
        )
    return (
        f"{shown(key)} is not a metric key; use lowercase snake_case "
        "(a-z, 0-9 and _, starting with a letter)"
    )


def _snake_case(text: str) -> str:
    ascii_text = (
        unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").strip()
    )
    words = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", ascii_text)
    key = re.sub(r"[^a-z0-9]+", "_", words.lower()).strip("_")
    if key and not key[0].isalpha():
        key = f"m_{key}"
    return key


ColumnName = Annotated[str, TenantName()]


class TabularMapping(pydantic.BaseModel):
    """How a user's table maps to KPI points; saved on a connection as JSON."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    # the headers of the tenant's own columns: dotted names allowed ("Sales.Total")
    date_column: ColumnName
    value_column: ColumnName
    metric_column: ColumnName | None = None
    metric: str | None = None
    dimension_columns: list[ColumnName] = []
    date_formats: list[str] = []
    thousands_separator: str | None = None
    decimal_separator: str = "."
    currency_symbols: str = ""

    @pydantic.field_validator("date_column", "value_column", "metric_column")
    @classmethod
    def _column_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value:
            raise ValueError("a column name must not be empty")
        return value

    @pydantic.field_validator("dimension_columns")
    @classmethod
    def _dimension_names(cls, value: list[str]) -> list[str]:
        names = [name.strip() for name in value]
        if any(not name for name in names):
            raise ValueError("a column name must not be empty")
        return names

    @pydantic.field_validator("metric")
    @classmethod
    def _fixed_metric(cls, value: str | None) -> str | None:
        if value is None:
            return None
        problem = metric_key_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @pydantic.field_validator("date_formats")
    @classmethod
    def _date_formats(cls, value: list[str]) -> list[str]:
        sample = datetime.date(2024, 1, 31)
        for fmt in value:
            # A format that cannot round-trip a date (no year, no day, a bad directive)
            # would silently turn "31/01" into 1900-01-31.
            try:
                parsed = datetime.datetime.strptime(sample.strftime(fmt), fmt).date()
            except ValueError:
                parsed = None
            if parsed != sample:
                raise ValueError(
                    f"date format {shown(fmt)} does not identify a full date; use strptime "
                    "directives with a year, month and day, such as '%d/%m/%Y'"
                )
        return value

    @pydantic.field_validator("thousands_separator")
    @classmethod
    def _thousands(cls, value: str | None) -> str | None:
        if value is not None and value not in _THOUSANDS_SEPARATORS:
            raise ValueError(
                f"thousands_separator {shown(value)} is not supported; use one of ',', '.', ' ', \"'\" "
                "or null for none"
            )
        return value

    @pydantic.field_validator("decimal_separator")
    @classmethod
    def _decimal(cls, value: str) -> str:
        if value not in _DECIMAL_SEPARATORS:
            raise ValueError(f"decimal_separator {shown(value)} is not supported; use '.' or ','")
        return value

    @pydantic.field_validator("currency_symbols")
    @classmethod
    def _currency(cls, value: str) -> str:
        for char in value:
            if unicodedata.category(char) != "Sc":
                raise ValueError(
                    f"currency_symbols holds single currency symbol characters such as '$€£'; "
                    f"{char!r} is not a currency symbol (ISO codes like 'USD' are not supported)"
                )
        return value

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> TabularMapping:
        if (self.metric_column is None) == (self.metric is None):
            raise ValueError(
                "set exactly one of metric_column (the column that holds each row's metric key) "
                "and metric (one fixed metric key for every row)"
            )
        if self.thousands_separator is not None and self.thousands_separator == (
            self.decimal_separator
        ):
            raise ValueError(
                f"thousands_separator and decimal_separator are both {self.decimal_separator!r}; "
                "they must differ"
            )
        seen: dict[str, str] = {}
        for role, name in self._roles():
            if name in seen:
                raise ValueError(f"column {shown(name)} is mapped twice ({seen[name]} and {role})")
            seen[name] = role
        return self

    def _roles(self) -> list[tuple[str, str]]:
        roles = [("date_column", self.date_column), ("value_column", self.value_column)]
        if self.metric_column is not None:
            roles.append(("metric_column", self.metric_column))
        roles.extend(("dimension_columns", name) for name in self.dimension_columns)
        return roles

    @property
    def columns(self) -> list[str]:
        """Every column the mapping reads, in the order date, value, metric, dimensions."""
        return [name for _, name in self._roles()]


@dataclass(frozen=True, slots=True)
class TabularRow:
    """One valid row: a KPI point as the user submitted it."""

    line: int
    day: datetime.date
    metric: str
    value: float
    dimensions: dict[str, str]


@dataclass(frozen=True)
class RowError:
    """Why one row (or one cell of it) is invalid."""

    line: int
    column: str | None
    reason: str
    # The reason without the tenant's text ("is not a number"): what a report counts by.
    kind: str = ""

    def __str__(self) -> str:
        if self.column is None:
            return f"line {self.line}: {self.reason}"
        return f"line {self.line}, column {shown(self.column)}: {self.reason}"

    @property
    def category(self) -> str:
        kind = self.kind or self.reason
        return kind if self.column is None else f"column {shown(self.column)}: {kind}"


class TableFormatError(ValueError):
    """A problem with the table as a whole (empty, no data rows, missing columns, ...).

    `problem` reads as a predicate of the source: "orders.csv" + " has no data rows".
    """

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source} {problem}")
        self.source = source
        self.problem = problem

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.source, self.problem))


class TableRejected(ValueError):
    """The table has invalid rows; nothing of it may be stored.

    Carries the counts (`bad_rows`, `error_count`), the first errors (`errors`) and, when
    there are more errors than the message shows, the report file that lists the first
    rows in full and counts the others by reason (`report`, rejection_reports.py). The
    message is bounded (a few KB) however many rows are bad.
    """

    def __init__(
        self,
        source: str,
        errors: Sequence[RowError],
        bad_rows: int | None = None,
        error_count: int | None = None,
        report: Path | None = None,
    ) -> None:
        self.source = source
        self.errors = list(errors)
        self.bad_rows = len({error.line for error in self.errors}) if bad_rows is None else bad_rows
        self.error_count = len(self.errors) if error_count is None else error_count
        self.report = report
        super().__init__(self.describe())

    def describe(self, *, listed_below: bool = False) -> str:
        """The message; `listed_below` for a file that lists every error after it."""
        count = f"{self.bad_rows} invalid row{'s' if self.bad_rows != 1 else ''}"
        if self.error_count != self.bad_rows:
            count += f" ({self.error_count} errors)"
        first = self.errors[:MAX_ERRORS_SHOWN]
        lines = [f"{self.source} was rejected and nothing was imported: {count}"]
        lines += [str(error) for error in first]
        more = self.error_count - len(first)
        if more > 0:
            where = "below" if listed_below else self.report and f"in {self.report}"
            if not where:
                lines.append(f"... and {more} more")
            elif self.bad_rows <= MAX_REPORTED_ROWS:
                lines.append(f"... and {more} more; every error is listed {where}")
            else:
                lines.append(
                    f"... and {more} more; the first {MAX_REPORTED_ROWS} invalid rows are"
                    f" listed {where}, the others counted by reason"
                )
        return "\n".join(lines)

    def with_report(self, report: Path) -> TableRejected:
        """The same rejection, naming another file that lists every error."""
        return TableRejected(self.source, self.errors, self.bad_rows, self.error_count, report)

    def __reduce__(
        self,
    ) -> tuple[type, tuple[str, list[RowError], int, int, Path | None]]:
        return (
            type(self),
            (self.source, self.errors, self.bad_rows, self.error_count, self.report),
        )


class _CellError(Exception):
    """A cell cannot be read; the reason is shown to the user, and `kind` is the reason
    without the cell's text (what a report counts errors by)."""

    def __init__(self, reason: str, kind: str | None = None) -> None:
        super().__init__(reason)
        self.kind = kind or reason


class _NotANumber(_CellError):
    """Unrecognised characters: may be reported as a formula instead."""


_DIGIT_SPAN = re.compile(r"[0-9](?:.*[0-9])?", re.DOTALL)
_EXPONENT = re.compile(r"(.*?)([eE][+-]?[0-9]+)")


class _NumberFormat:
    """Reads a value cell the way the mapping allows."""

    __slots__ = ("common", "currency", "decimal", "drop_thousands", "grouped", "plain", "thousands")

    def __init__(self, thousands: str, decimal: str, currency: str) -> None:
        self.thousands = thousands  # every accepted thousands character, "" when none
        self.decimal = decimal
        self.currency = currency
        # Most cells are plain numbers: one regex and float() instead of the full grammar.
        self.plain = re.compile(rf"[+-]?[0-9]+(?:{re.escape(decimal)}[0-9]+)?")
        group = rf"[0-9]{{1,3}}(?:[{re.escape(thousands)}][0-9]{{3}})+"
        self.grouped = re.compile(group) if thousands else None
        self.drop_thousands = str.maketrans("", "", thousands)
        # The next most common: "$1,234.50", "-1.234,50 €". Anything else takes the slow
        # path, which accepts the same and explains what it rejects.
        whole = f"(?:{group}|[0-9]+)" if thousands else "[0-9]+"
        symbol = rf"(?:[{re.escape(currency)}])" if currency else "(?!)"
        self.common = re.compile(
            rf"(?P<sign>[-+]?)\s*(?P<before>{symbol}?)\s*(?P<sign2>[-+]?)(?P<whole>{whole})"
            rf"(?:{re.escape(decimal)}(?P<fraction>[0-9]+))?\s*(?P<after>{symbol}?)"
        )

    def parse(self, text: str) -> float:
        """`text` is already stripped."""
        if not text:
            raise _CellError("value is empty")
        value = self._fast(text)
        if value is not None and math.isfinite(value):
            return value
        if text[0] in "=@":
            raise _CellError(_FORMULA_REASON)
        try:
            return self._parse(text)
        except _NotANumber:
            if text[0] in _FORMULA_STARTS and len(text) > 1:
                raise _CellError(_FORMULA_REASON) from None
            raise

    def _fast(self, text: str) -> float | None:
        """The common shapes, or None to take the full grammar."""
        if self.plain.fullmatch(text):
            return float(text if self.decimal == "." else text.replace(",", ".")) + 0.0
        common = self.common.fullmatch(text)
        if common:
            sign, before, sign2, whole, fraction, after = common.groups()
            if not (sign and sign2) and not (before and after):
                whole = whole.translate(self.drop_thousands)
                number = float(f"{whole}.{fraction or '0'}")
                return (-number if "-" in (sign, sign2) else number) + 0.0
        return None

    def _parse(self, text: str) -> float:
        digits = _DIGIT_SPAN.search(text)
        if not digits:
            raise _NotANumber(f"{shown(text)} is not a number", _NOT_A_NUMBER)
        start, end = digits.span()
        if start > 0 and text[start - 1] == self.decimal:
            start -= 1  # ".5"
        elif end < len(text) and text[end] == self.decimal:
            end += 1  # "5."
        negative, percent = self._affixes(text, text[:start], text[end:])
        number = self._core(text, text[start:end])
        try:
            if percent:
                number = number.scaleb(-2)
            # copy_negate and + 0.0: no "-0" for "(0)" or "-0"
            value = float(number.copy_negate() if negative else number) + 0.0
        except ArithmeticError:  # an exponent beyond what Decimal allows
            value = math.inf
        if not math.isfinite(value):
            raise _CellError(f"{shown(text)} is not a finite number", _NOT_FINITE)
        return value

    def _affixes(self, text: str, prefix: str, suffix: str) -> tuple[bool, bool]:
        """Signs, parentheses, currency symbol and percent around the digits."""
        signs = opens = closes = percents = 0
        symbols: list[str] = []
        for part, allowed in ((prefix, "(+" + _MINUS_SIGNS), (suffix, ")%")):
            for char in part:
                if char.isspace():
                    continue
                if char in self.currency:
                    symbols.append(char)
                elif char not in allowed:
                    if unicodedata.category(char) == "Sc":
                        allowed_symbols = (
                            f"only {shown(self.currency)}" if self.currency else "none"
                        )
                        raise _CellError(
                            f"{shown(text)} is not a number: currency symbol {char!r} is not allowed "
                            f"by the mapping (currency_symbols: {allowed_symbols})",
                            "has a currency symbol the mapping does not allow",
                        )
                    raise _NotANumber(f"{shown(text)} is not a number", _NOT_A_NUMBER)
                elif char == "(":
                    opens += 1
                elif char == ")":
                    closes += 1
                elif char == "%":
                    percents += 1
                else:
                    signs += 1
        if opens > 1 or closes > 1 or opens != closes:
            raise _NotANumber(
                f"{shown(text)} is not a number: unbalanced parentheses",
                "is not a number: unbalanced parentheses",
            )
        if signs > 1 or (signs and opens):
            raise _NotANumber(
                f"{shown(text)} is not a number: use one minus sign or parentheses for a negative value",
                "is not a number: several signs",
            )
        if len(symbols) > 1:
            raise _NotANumber(
                f"{shown(text)} is not a number: more than one currency symbol",
                "is not a number: more than one currency symbol",
            )
        if percents > 1 or (percents and symbols):
            raise _NotANumber(f"{shown(text)} is not a number", _NOT_A_NUMBER)
        negative = bool(opens) or any(char in _MINUS_SIGNS for char in prefix)
        return negative, bool(percents)

    def _core(self, text: str, core: str) -> Decimal:
        """The digits with their separators and an optional exponent, as a Decimal."""
        mantissa, exponent = core, ""
        match = _EXPONENT.fullmatch(core)
        if match:
            mantissa, exponent = match.groups()
        whole, _, fraction = mantissa.partition(self.decimal)
        if fraction and not _is_digits(fraction):
            self._explain(text, fraction, in_fraction=True)
        if whole and not _is_digits(whole):
            if self.grouped and self.grouped.fullmatch(whole):
                whole = re.sub(r"[^0-9]", "", whole)
            else:
                self._explain(text, whole, in_fraction=False)
        try:
            return Decimal(f"{whole or '0'}.{fraction or '0'}{exponent}")
        except InvalidOperation:
            raise _NotANumber(f"{shown(text)} is not a number", _NOT_A_NUMBER) from None

    def _explain(self, text: str, part: str, *, in_fraction: bool) -> None:
        """Raise the most helpful reason for separators that are not where they may be."""
        stray = next((char for char in part if not "0" <= char <= "9"), "")
        if stray and not in_fraction and self.thousands and stray in self.thousands:
            raise _CellError(
                f"{shown(text)} is not a number: thousands separator {stray!r} is misplaced "
                f"(groups of 3 digits are expected; the decimal separator is {self.decimal!r})",
                "is not a number: a misplaced thousands separator",
            )
        if stray in _THOUSANDS_SEPARATORS | _DECIMAL_SEPARATORS:
            allowed = (
                f"thousands separator {self.thousands[0]!r}"
                if self.thousands
                else "no thousands separator"
            )
            raise _CellError(
                f"{shown(text)} is not a number: {stray!r} is not allowed there "
                f"(the mapping has decimal separator {self.decimal!r} and {allowed})",
                "is not a number: a separator the mapping does not allow there",
            )
        raise _NotANumber(f"{shown(text)} is not a number", _NOT_A_NUMBER)


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


_FORMULA_REASON = "looks like a spreadsheet formula; only numbers are accepted"
_NOT_A_NUMBER = "is not a number"
_NOT_FINITE = "is not a finite number"

# Spreadsheet date serial numbers count days from 1899-12-30 (Lotus 1-2-3's leap-year bug
# kept by Excel and Google Sheets makes day 0 that date rather than 1899-12-31).
SERIAL_EPOCH = datetime.date(1899, 12, 30)
_MAX_SERIAL = (datetime.date.max - SERIAL_EPOCH).days


def _is_number(cell: object) -> TypeGuard[int | float]:
    """A typed numeric cell (a Sheets API number); bool is not one."""
    return isinstance(cell, int | float) and not isinstance(cell, bool)


def serial_date(serial: float) -> datetime.date:
    """The date of a spreadsheet serial number (its time-of-day fraction dropped)."""
    if not 0 <= serial <= _MAX_SERIAL:  # also NaN and infinities, without float(huge int)
        raise _CellError(
            f"{_number_shown(serial)} is not a date: a number in the date column is read as a spreadsheet"
            f" date serial number (days since {SERIAL_EPOCH.isoformat()}, 0 to {_MAX_SERIAL});"
            " format the column as a date or as text",
            "is not a date: a number outside the spreadsheet date serial numbers",
        )
    return SERIAL_EPOCH + datetime.timedelta(days=math.floor(serial))


def _typed_number(cell: float) -> float:
    try:
        value = float(cell) + 0.0
    except OverflowError:  # an integer beyond a float's range
        value = math.inf
    if not math.isfinite(value):
        raise _CellError(f"{_number_shown(cell)} is not a finite number", _NOT_FINITE)
    return value


def _number_shown(number: float) -> str:
    """A typed number for a message, cut like text (an integer may have thousands of digits)."""
    try:
        text = repr(number)
    except ValueError:  # beyond Python's digit limit for int -> str
        return "a number of more than 4300 digits"
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}... ({len(text)} digits)"


def _number_format(mapping: TabularMapping) -> _NumberFormat:
    thousands = mapping.thousands_separator or ""
    return _NumberFormat(
        thousands=_SEPARATOR_ALIASES.get(thousands, thousands),
        decimal=mapping.decimal_separator,
        currency=mapping.currency_symbols,
    )


def _date_parser(formats: Sequence[str]) -> Callable[[str], datetime.date]:
    expected = "YYYY-MM-DD" + (f" or {shown_list(formats, separator=' or ')}" if formats else "")

    # Dates repeat across rows; strptime is the slowest step of a row without the cache.
    @functools.lru_cache(maxsize=4096)
    def parse(text: str) -> datetime.date:
        if not text:
            raise _CellError("date is empty")
        invalid = ""
        if _ISO_DATE.fullmatch(text):
            try:
                if len(text) == 10:
                    return datetime.date.fromisoformat(text)
                return datetime.datetime.fromisoformat(text).date()
            except ValueError as exc:
                if not str(exc).startswith("Invalid isoformat"):
                    invalid = str(exc)  # a real date field out of range, e.g. "2024-02-30"
        for fmt in formats:
            try:
                return datetime.datetime.strptime(text, fmt).date()
            except ValueError as exc:
                if not str(exc).startswith(("time data", "unconverted data")):
                    invalid = invalid or str(exc)
        if invalid:
            raise _CellError(
                f"{shown(text)} is not a valid date ({invalid})", "is not a valid date"
            )
        raise _CellError(
            f"{shown(text)} is not a date; expected {expected}",
            f"is not a date; expected {expected}",
        )

    return parse


def _texts(cells: Sequence[object]) -> list[str]:
    """Stripped cell texts; a Sheets API cell may also be a number, a boolean or null."""
    return [_text(cell) for cell in cells]


def _text(cell: object) -> str:
    if isinstance(cell, str):
        return cell.strip()
    if cell is None:
        return ""
    try:
        return str(cell).strip()
    except ValueError:  # an integer beyond Python's digit limit for int -> str
        raise _CellError("holds a number of more than 4300 digits") from None


class _TableParser:
    """Checks the header against the mapping once, then reads rows one at a time."""

    def __init__(self, header: Sequence[object], mapping: TabularMapping, source: str) -> None:
        self.source = source
        self.mapping = mapping
        try:
            names = _texts(header)
        except _CellError as exc:
            raise TableFormatError(source, f"has a header cell that {exc}") from None
        if not any(names):
            raise TableFormatError(source, "is empty: there is no header row")
        self.width = len(names)
        positions: dict[str, list[int]] = {}
        for index, name in enumerate(names):
            if name:
                positions.setdefault(name, []).append(index)
        duplicated = [(name, idx) for name, idx in positions.items() if len(idx) > 1]
        if duplicated:
            listed = "; ".join(
                f"{shown(name)} (columns {', '.join(str(i + 1) for i in idx[:SHOWN_NAMES])}"
                f"{'...' if len(idx) > SHOWN_NAMES else ''})"
                for name, idx in duplicated[:SHOWN_NAMES]
            )
            if len(duplicated) > SHOWN_NAMES:
                listed += f" and {len(duplicated) - SHOWN_NAMES} more"
            raise TableFormatError(
                source, f"names a column more than once in its header: {listed}; rename them"
            )
        missing = [name for name in mapping.columns if name not in positions]
        if missing:
            raise TableFormatError(source, _missing_columns(missing, names))
        self.date_index = positions[mapping.date_column][0]
        self.value_index = positions[mapping.value_column][0]
        self.metric_index = (
            positions[mapping.metric_column][0] if mapping.metric_column is not None else None
        )
        self.dimensions = [(name, positions[name][0]) for name in mapping.dimension_columns]
        self.parse_date = _date_parser(mapping.date_formats)
        self.number = _number_format(mapping)
        self.seen: dict[bytes, int] = {}

    def parse_row(self, line: int, cells: Sequence[object]) -> TabularRow | list[RowError] | None:
        """A valid row, its errors, or None for a fully empty row."""
        try:
            texts = _texts(cells)
        except _CellError as exc:
            return [RowError(line, None, f"has a cell that {exc}", f"has a cell that {exc.kind}")]
        if not any(texts):
            return None
        if len(texts) > self.width and any(texts[self.width :]):
            return [
                RowError(
                    line,
                    None,
                    f"has {len(texts)} cells but the header has {self.width} columns "
                    "(an unquoted delimiter inside a value?)",
                    "has more cells than the header has columns",
                )
            ]
        if len(texts) < self.width:
            texts += [""] * (self.width - len(texts))  # ragged: Sheets drops trailing empty cells
        errors: list[RowError] = []
        day = metric = value = None
        date_cell = _cell(cells, self.date_index)
        try:
            if _is_number(date_cell):
                day = serial_date(date_cell)
            else:
                day = self.parse_date(texts[self.date_index])
        except _CellError as exc:
            errors.append(RowError(line, self.mapping.date_column, str(exc), exc.kind))
        if self.metric_index is None:
            metric = self.mapping.metric
        else:
            metric = texts[self.metric_index]
            problem = "metric is empty" if not metric else metric_key_problem(metric)
            if problem:
                kind = "is not a metric key" if metric else problem
                errors.append(RowError(line, self.mapping.metric_column, problem, kind))
        value_cell = _cell(cells, self.value_index)
        try:
            if _is_number(value_cell):
                value = _typed_number(value_cell)
            else:
                value = self.number.parse(texts[self.value_index])
        except _CellError as exc:
            errors.append(RowError(line, self.mapping.value_column, str(exc), exc.kind))
        if errors:
            return errors
        assert day is not None and metric is not None and value is not None
        dimensions = {name: texts[index] for name, index in self.dimensions}
        too_large = breakdown_problem({name: text for name, text in dimensions.items() if text})
        if too_large:
            return [RowError(line, None, too_large, "the breakdown is too large")]
        # A 128-bit digest instead of the key itself keeps the duplicate check small.
        key = hashlib.blake2b(
            repr((day.toordinal(), metric, *dimensions.values())).encode(), digest_size=16
        ).digest()
        first = self.seen.setdefault(key, line)
        if first != line:
            return [
                RowError(
                    line,
                    None,
                    f"duplicates line {first} (same date, metric and dimensions)",
                    "duplicates an earlier line (same date, metric and dimensions)",
                )
            ]
        return TabularRow(line=line, day=day, metric=metric, value=value, dimensions=dimensions)


def _cell(cells: Sequence[object], index: int) -> object:
    return cells[index] if index < len(cells) else None


def _missing_columns(missing: list[str], present: list[str]) -> str:
    named = shown_list(missing)
    noun = "column" if len(missing) == 1 else "columns"
    listed = shown_list([name for name in present if name]) or "none"
    message = f"is missing mapped {noun} {named}; the header has: {listed}"
    by_folded = {name.casefold(): name for name in present if name}
    hints = [
        f"{shown(name)} -> {shown(by_folded[name.casefold()])}"
        for name in missing
        if name.casefold() in by_folded
    ][:SHOWN_NAMES]
    if hints:
        message += f" (names are case-sensitive: {', '.join(hints)}?)"
    return message


def parse_table(
    header: Sequence[object],
    rows: Iterable[tuple[int, Sequence[object]]],
    mapping: TabularMapping,
    *,
    source: str,
) -> Iterator[TabularRow]:
    """Stream the valid rows of a table whose header has already been read.

    `rows` yields (line number as the user sees it, cells). Header problems raise
    `TableFormatError` at once; the first invalid row raises `TableRejected` with that row's
    errors, so run `validate_table` over the same table first to report every error.
    """
    parser = _TableParser(header, mapping, source)
    return _stream(parser, rows)


def _stream(
    parser: _TableParser, rows: Iterable[tuple[int, Sequence[object]]]
) -> Iterator[TabularRow]:
    count = 0
    for line, cells in rows:
        parsed = parser.parse_row(line, cells)
        if isinstance(parsed, list):
            raise TableRejected(parser.source, parsed)
        if parsed is not None:
            count += 1
            yield parsed
    if count == 0:
        raise TableFormatError(parser.source, _NO_DATA)


_NO_DATA = "has a header row but no data rows"


def validate_table(
    header: Sequence[object],
    rows: Iterable[tuple[int, Sequence[object]]],
    mapping: TabularMapping,
    *,
    source: str,
    report: Path | None = None,
) -> int:
    """Read the whole table and return its number of data rows.

    Raises `TableFormatError` for a problem with the table as a whole and `TableRejected`
    otherwise: its message shows the counts and the first errors; when there are more, a
    report is written to `report` (default: a new file in the system's temporary folder),
    which the message names: the first rows with every error, then counts by reason
    (rejection_reports.py). Memory, the message and the report stay bounded whatever the
    number of bad rows.
    """
    parser = _TableParser(header, mapping, source)
    errors = ErrorReport(source, report, shown=MAX_ERRORS_SHOWN)
    count = 0
    try:
        for line, cells in rows:
            parsed = parser.parse_row(line, cells)
            if isinstance(parsed, list):
                errors.add(parsed)  # type: ignore[arg-type]
            elif parsed is not None:
                count += 1
        if errors.count:
            written = errors.finish()
            raise TableRejected(
                source,
                errors.first,  # type: ignore[arg-type]
                errors.bad_rows,
                errors.count,
                written,
            )
    finally:
        errors.discard()  # a pass that failed half-way leaves no temporary file
    if count == 0:
        raise TableFormatError(source, _NO_DATA)
    return count


class Table(Protocol):
    """A user's table as the table engine imports it: validated whole, then streamed."""

    @property
    def source(self) -> str:
        """How messages name it ("orders.csv", "sheet range ... of spreadsheet ...")."""
        ...

    @property
    def name(self) -> str:
        """A short name for its rejection report's file."""
        ...

    def validate(self, report: Path | None = None) -> int:
        """Check every row; the number of data rows, or TableRejected naming the bad ones
        (the first rows in full and the others counted by reason in `report`, when there
        are more than the message shows)."""
        ...

    def rows(self) -> Iterator[TabularRow]:
        """The valid rows, for writing (after `validate`)."""
        ...


@dataclass(frozen=True)
class NumberedRows:
    """A table already in memory (a fetched sheet range): its header, and its rows after
    the header with their line numbers as the user sees them."""

    source: str
    name: str
    mapping: TabularMapping
    header_line: int
    header: Sequence[object]
    records: Sequence[tuple[int, Sequence[object]]]

    def validate(self, report: Path | None = None) -> int:
        return validate_table(
            self.header, self.records, self.mapping, source=self.source, report=report
        )

    def rows(self) -> Iterator[TabularRow]:
        return parse_table(self.header, self.records, self.mapping, source=self.source)
