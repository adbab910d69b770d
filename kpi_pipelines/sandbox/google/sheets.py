"""Google Sheets API v4, reads: `values.get` and `values.batchGet`.

- `GET /v4/spreadsheets/{id}/values/{range}` -> `ValueRange {range, majorDimension, values}`
- `GET /v4/spreadsheets/{id}/values:batchGet?ranges=..&ranges=..` ->
  `{spreadsheetId, valueRanges: [ValueRange, ...]}`

Spreadsheets are defined as typed cells (`Number` with a Sheets number-format pattern,
`currency`, `percent`, `DateTime` with a date pattern, `Text`, `Bool`, `Formula` with its cached
value, `ErrorValue`, None for empty), so every rendering derives from the same cells:
`valueRenderOption` FORMATTED_VALUE (default: strings as the sheet shows them, "$1,234.50",
"1/5/2024"), UNFORMATTED_VALUE (numbers, booleans; dates per `dateTimeRenderOption`:
SERIAL_NUMBER, the default, days since 1899-12-30, or FORMATTED_STRING), FORMULA (formulas as
"=SUM(B2:B4)", other cells unformatted). `majorDimension` ROWS (default) or COLUMNS.
Trailing empty cells and rows are dropped (ragged rows), empty cells inside a row are "",
empty rows inside the range are [], and `values` is absent when the range holds nothing.

A1 ranges: `Sheet1!A1:D100`, `'Sheet 1'!A1:D100` (a quote in a name is doubled:
`'Bob''s'!A1`), a bare sheet name (the whole grid), a bare `A1:B2` (first sheet), `A:B`, `2:5`,
`A2:C` (open ends run to the grid's edge), reversed corners, named ranges. The echoed `range` is
sheet-qualified, quoted only when the name needs it, with open ends resolved to the grid.
Errors: unknown spreadsheet 404 NOT_FOUND "Requested entity was not found."; unparsable range or
unknown sheet 400 "Unable to parse range: ..."; a bounded range past the grid 400 "Range (...)
exceeds grid limits. Max rows: N, max columns: M"; a bad enum 400 "Invalid value at ...".
Quota: read requests per minute per user (default 60) and per project (default 300), a sliding
60-second window on the sandbox clock: 429 RESOURCE_EXHAUSTED with Google's quota message and
ErrorInfo (RATE_LIMIT_EXCEEDED); a scripted quota fault (`Fault("quota", api="sheets")`)
answers with the same per-user body.
"""

from __future__ import annotations

import re
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kpi_pipelines.sandbox.google._common import (
    Fault,
    FaultPlan,
    SandboxClock,
    error_info,
    google_error,
)
from kpi_pipelines.sandbox.google.oauth import (
    DRIVE,
    DRIVE_READONLY,
    SPREADSHEETS,
    SPREADSHEETS_READONLY,
    AccessToken,
    OAuthServer,
)

SERVICE = "sheets.googleapis.com"
SERIAL_EPOCH = datetime(1899, 12, 30)
DEFAULT_ROWS = 1000
DEFAULT_COLUMNS = 26
VALUE_RENDER_OPTIONS = ("FORMATTED_VALUE", "UNFORMATTED_VALUE", "FORMULA")
DATE_TIME_RENDER_OPTIONS = ("SERIAL_NUMBER", "FORMATTED_STRING")
MAJOR_DIMENSIONS = ("DIMENSION_UNSPECIFIED", "ROWS", "COLUMNS")
_SCOPES = (SPREADSHEETS_READONLY, SPREADSHEETS, DRIVE_READONLY, DRIVE)


# -- cells --------------------------------------------------------------------------------------
def _round_half_up(value: float, decimals: int) -> Decimal:
    return Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-decimals), ROUND_HALF_UP)


def _general(value: float) -> str:
    """Sheets' "General" (automatic) number format."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    text = f"{float(value):.15g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        return f"{mantissa}E{exponent[0]}{int(exponent[1:]):02d}"
    return text


def format_number(value: float, pattern: str | None) -> str:
    """Render a number with a (subset of) Sheets number-format pattern.

    Supports literal prefixes/suffixes ("$", "€", quoted text, `[$€]`), grouping (","),
    required ("0") and optional ("#") decimals, percent ("%"); negative numbers get a leading
    "-" (Sheets' default for patterns without a negative section). None means General.
    """
    if pattern is None or pattern.lower() in ("", "general"):
        return _general(value)
    section = pattern.split(";")[0]
    section = re.sub(r"\[\$([^\]-]*)(?:-[^\]]*)?\]", r"\1", section)  # [$€-407] -> €
    section = re.sub(r'"([^"]*)"', r"\1", section)
    section = section.replace("\\", "")
    digits = [i for i, ch in enumerate(section) if ch in "#0"]
    if not digits:
        return section
    first, last = digits[0], digits[-1]
    prefix, numeric, suffix = section[:first], section[first : last + 1], section[last + 1 :]
    if "%" in prefix + suffix:
        value = value * 100
    integer, _, fraction = numeric.partition(".")
    required = fraction.count("0")
    optional = fraction.count("#")
    rounded = _round_half_up(abs(value), required + optional)
    text = f"{rounded:,f}" if "," in integer else f"{rounded:f}"
    if optional and "." in text:
        head, tail = text.split(".")
        tail = tail.rstrip("0").ljust(required, "0")
        text = f"{head}.{tail}" if tail else head
    if text.split(".")[0] == "0" and not integer.strip(",").endswith("0"):
        text = text[1:] if "." in text else text
    sign = "-" if value < 0 and rounded != 0 else ""
    return f"{sign}{prefix}{text}{suffix}"


_DATE_TOKENS = re.compile(
    r'(yyyy|yy|mmmm|mmm|mm|m|dddd|ddd|dd|d|hh|h|ss|s|am/pm|a/p|"[^"]*"|\\.|.)', re.IGNORECASE
)
_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def format_datetime(value: date | datetime, pattern: str) -> str:
    """Render a date or date-time with a Sheets date/time pattern (M/d/yyyy, yyyy-mm-dd,
    d mmm yyyy, M/d/yyyy H:mm:ss, h:mm AM/PM ...). Tokens are case-insensitive; m/mm after
    an hour or before seconds means minutes."""
    moment = value if isinstance(value, datetime) else datetime(value.year, value.month, value.day)
    tokens = [t for t in _DATE_TOKENS.findall(pattern) if t]
    kinds = [t.lower() for t in tokens]
    twelve_hour = any(k in ("am/pm", "a/p") for k in kinds)
    out = []
    for i, (token, kind) in enumerate(zip(tokens, kinds, strict=True)):
        if kind in ("m", "mm"):
            before = next((k for k in reversed(kinds[:i]) if k[0] in "hdyms" and k[0] != '"'), "")
            after = next((k for k in kinds[i + 1 :] if k[0] in "hdyms" and k[0] != '"'), "")
            if before.startswith("h") or after.startswith("s"):
                out.append(f"{moment.minute:02d}" if kind == "mm" else str(moment.minute))
                continue
        hour = moment.hour % 12 or 12 if twelve_hour else moment.hour
        rendered = {
            "yyyy": f"{moment.year:04d}",
            "yy": f"{moment.year % 100:02d}",
            "mmmm": _MONTHS[moment.month - 1],
            "mmm": _MONTHS[moment.month - 1][:3],
            "mm": f"{moment.month:02d}",
            "m": str(moment.month),
            "dddd": _DAYS[moment.weekday()],
            "ddd": _DAYS[moment.weekday()][:3],
            "dd": f"{moment.day:02d}",
            "d": str(moment.day),
            "hh": f"{hour:02d}",
            "h": str(hour),
            "ss": f"{moment.second:02d}",
            "s": str(moment.second),
            "am/pm": "AM" if moment.hour < 12 else "PM",
            "a/p": "A" if moment.hour < 12 else "P",
        }.get(kind)
        if rendered is None:
            rendered = token[1:-1] if token.startswith('"') else token.lstrip("\\")
        out.append(rendered)
    return "".join(out)


class Cell(ABC):
    """A typed cell. `formatted()` is what the sheet shows, `unformatted()` the raw value."""

    @abstractmethod
    def formatted(self) -> str: ...

    @abstractmethod
    def unformatted(self) -> Any: ...


@dataclass(frozen=True)
class Number(Cell):
    value: float
    pattern: str | None = None  # a Sheets number format pattern; None = General

    def formatted(self) -> str:
        return format_number(self.value, self.pattern)

    def unformatted(self) -> Any:
        return int(self.value) if float(self.value).is_integer() else float(self.value)


def currency(value: float, symbol: str = "$", decimals: int = 2) -> Number:
    """A currency-formatted number, e.g. "$1,234.50"."""
    return Number(value, f"{symbol}#,##0" + ("." + "0" * decimals if decimals else ""))


def percent(value: float, decimals: int = 2) -> Number:
    """A percent-formatted fraction: 0.125 shows as "12.50%"."""
    return Number(value, "0" + ("." + "0" * decimals if decimals else "") + "%")


@dataclass(frozen=True)
class DateTime(Cell):
    value: date | datetime  # a naive datetime is the sheet's local wall time
    pattern: str | None = None  # default: M/d/yyyy, or M/d/yyyy H:mm:ss for a datetime

    @property
    def effective_pattern(self) -> str:
        if self.pattern:
            return self.pattern
        return "M/d/yyyy H:mm:ss" if isinstance(self.value, datetime) else "M/d/yyyy"

    def formatted(self) -> str:
        return format_datetime(self.value, self.effective_pattern)

    def unformatted(self) -> Any:
        return self.serial()

    def serial(self) -> int | float:
        """Days since 1899-12-30, with the time of day as a fraction."""
        if isinstance(self.value, datetime):
            delta = self.value.replace(tzinfo=None) - SERIAL_EPOCH
            serial = delta.days + delta.seconds / 86_400 + delta.microseconds / 86_400e6
            return int(serial) if float(serial).is_integer() else serial
        return (self.value - SERIAL_EPOCH.date()).days


@dataclass(frozen=True)
class Text(Cell):
    value: str

    def formatted(self) -> str:
        return self.value

    def unformatted(self) -> Any:
        return self.value


@dataclass(frozen=True)
class Bool(Cell):
    value: bool

    def formatted(self) -> str:
        return "TRUE" if self.value else "FALSE"

    def unformatted(self) -> Any:
        return self.value


@dataclass(frozen=True)
class ErrorValue(Cell):
    code: str = "#N/A"  # "#DIV/0!", "#REF!", "#VALUE!", "#NAME?", "#N/A", "#ERROR!"

    def formatted(self) -> str:
        return self.code

    def unformatted(self) -> Any:
        return self.code


@dataclass(frozen=True)
class Formula(Cell):
    formula: str  # "=SUM(B2:B4)"
    value: Cell | float | str | bool | date | None  # the cached result, typed like any cell

    def __post_init__(self) -> None:
        if not self.formula.startswith("="):
            raise ValueError("a formula starts with '='")

    @property
    def result(self) -> Cell:
        return to_cell(self.value) or Text("")

    def formatted(self) -> str:
        return self.result.formatted()

    def unformatted(self) -> Any:
        return self.result.unformatted()


CellInput = Cell | float | int | str | bool | date | None


def to_cell(value: CellInput) -> Cell | None:
    """Plain Python values as cells: None empty, bool, int/float (General), str, date."""
    if value is None or isinstance(value, Cell):
        return value
    if isinstance(value, bool):
        return Bool(value)
    if isinstance(value, int | float):
        return Number(value)
    if isinstance(value, str):
        return Text(value)
    if isinstance(value, date):
        return DateTime(value)
    raise TypeError(f"cannot put {type(value).__name__} in a cell")


def render(cell: Cell | None, value_render: str, date_time_render: str) -> Any:
    if cell is None:
        return None
    if isinstance(cell, Formula):
        if value_render == "FORMULA":
            return cell.formula
        cell = cell.result
    if value_render == "FORMATTED_VALUE":
        return cell.formatted()
    if isinstance(cell, DateTime) and date_time_render == "FORMATTED_STRING":
        return cell.formatted()
    return cell.unformatted()


# -- spreadsheets -------------------------------------------------------------------------------
@dataclass
class Sheet:
    title: str
    rows: list[list[Cell | None]] = field(default_factory=list)
    row_count: int = DEFAULT_ROWS
    column_count: int = DEFAULT_COLUMNS

    def __post_init__(self) -> None:
        self.rows = [[to_cell(v) for v in row] for row in self.rows]
        self.row_count = max(self.row_count, len(self.rows))
        self.column_count = max(self.column_count, *(len(r) for r in self.rows), 0)

    def set(self, a1: str, value: CellInput) -> None:
        """Set one cell, e.g. `sheet.set("B7", currency(12.5))` (grows the grid if needed)."""
        row, col = _cell_ref(a1)
        while len(self.rows) <= row:
            self.rows.append([])
        line = self.rows[row]
        while len(line) <= col:
            line.append(None)
        line[col] = to_cell(value)
        self.row_count = max(self.row_count, row + 1)
        self.column_count = max(self.column_count, col + 1)


@dataclass
class Spreadsheet:
    spreadsheet_id: str
    sheets: list[Sheet]
    title: str = "Untitled spreadsheet"
    named_ranges: dict[str, str] = field(default_factory=dict)  # name -> "Sheet!A1:B2"

    def sheet(self, title: str) -> Sheet:
        for sheet in self.sheets:
            if sheet.title == title:
                return sheet
        raise KeyError(title)

    def find_sheet(self, title: str) -> Sheet | None:
        for sheet in self.sheets:
            if sheet.title == title:
                return sheet
        lowered = title.lower()
        return next((s for s in self.sheets if s.title.lower() == lowered), None)


# -- A1 notation ------------------------------------------------------------------------------
class RangeError(Exception):
    pass


def column_letters(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def _column_index(letters: str) -> int:
    index = 0
    for ch in letters.upper():
        index = index * 26 + ord(ch) - 64
    return index - 1


def _cell_ref(a1: str) -> tuple[int, int]:
    match = re.fullmatch(r"([A-Za-z]{1,3})([1-9]\d*)", a1)
    if not match:
        raise ValueError(f"not a cell reference: {a1!r}")
    return int(match.group(2)) - 1, _column_index(match.group(1))


def quote_sheet_title(title: str) -> str:
    """A sheet name as A1 notation needs it: quoted (quotes doubled) unless a plain word."""
    plain = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", title) and not re.fullmatch(
        r"[A-Za-z]{1,3}\d+|[Rr]\d*[Cc]\d*|true|false", title, re.IGNORECASE
    )
    return title if plain else "'" + title.replace("'", "''") + "'"


_ENDPOINT = re.compile(r"([A-Za-z]{1,3})?([1-9]\d*)?")


@dataclass(frozen=True)
class ResolvedRange:
    sheet: Sheet
    r0: int
    c0: int
    r1: int
    c1: int

    @property
    def a1(self) -> str:
        start = f"{column_letters(self.c0)}{self.r0 + 1}"
        end = f"{column_letters(self.c1)}{self.r1 + 1}"
        cells = start if (self.r0, self.c0) == (self.r1, self.c1) else f"{start}:{end}"
        return f"{quote_sheet_title(self.sheet.title)}!{cells}"


def _split_sheet(text: str) -> tuple[str | None, str]:
    """('Sheet name' or None, cells part) of an A1 range."""
    if text.startswith("'"):
        i, name = 1, []
        while i < len(text):
            if text[i] == "'":
                if text[i + 1 : i + 2] == "'":
                    name.append("'")
                    i += 2
                    continue
                rest = text[i + 1 :]
                if rest and not rest.startswith("!"):
                    raise RangeError
                return "".join(name), rest[1:] if rest else ""
            name.append(text[i])
            i += 1
        raise RangeError
    if "!" in text:
        name, _, cells = text.partition("!")
        return name, cells
    return None, text


def resolve_range(spreadsheet: Spreadsheet, text: str) -> ResolvedRange:
    """Resolve an A1 range (raises RangeError: 'Unable to parse range', or ValueError with the
    grid-limits message)."""
    if not text or not spreadsheet.sheets:
        raise RangeError
    sheet_name, cells = _split_sheet(text)
    if sheet_name is None:
        whole = spreadsheet.find_sheet(cells)
        if whole is not None:
            sheet_name, cells = whole.title, ""
        elif cells in spreadsheet.named_ranges:
            return resolve_range(spreadsheet, spreadsheet.named_ranges[cells])
    sheet = spreadsheet.sheets[0] if sheet_name is None else spreadsheet.find_sheet(sheet_name)
    if sheet is None:
        raise RangeError
    last_row, last_col = sheet.row_count - 1, sheet.column_count - 1
    if not cells:
        return ResolvedRange(sheet, 0, 0, last_row, last_col)
    start_text, colon, end_text = cells.partition(":")
    first = _ENDPOINT.fullmatch(start_text)
    second = _ENDPOINT.fullmatch(end_text) if colon else None
    if (
        first is None
        or not any(first.groups())
        or (colon and (second is None or not any(second.groups())))
    ):
        raise RangeError
    c0 = _column_index(first.group(1)) if first.group(1) else None
    r0 = int(first.group(2)) - 1 if first.group(2) else None
    if not colon:
        if c0 is None or r0 is None:
            raise RangeError
        c1, r1 = c0, r0
    else:
        assert second is not None
        c1 = _column_index(second.group(1)) if second.group(1) else None
        r1 = int(second.group(2)) - 1 if second.group(2) else None
    # Open ends (a row or column left out) run to the edge of the grid.
    bounded_rows = r0 is not None and r1 is not None
    bounded_cols = c0 is not None and c1 is not None
    r0 = 0 if r0 is None else r0
    c0 = 0 if c0 is None else c0
    r1 = last_row if r1 is None else r1
    c1 = last_col if c1 is None else c1
    r0, r1 = sorted((r0, r1))
    c0, c1 = sorted((c0, c1))
    resolved = ResolvedRange(sheet, r0, c0, r1, c1)
    too_far = (bounded_rows and r1 > last_row) or (bounded_cols and c1 > last_col)
    if too_far or r0 > last_row or c0 > last_col:
        raise ValueError(
            f"Range ({resolved.a1}) exceeds grid limits. "
            f"Max rows: {sheet.row_count}, max columns: {sheet.column_count}"
        )
    return resolved


def read_values(
    resolved: ResolvedRange, major_dimension: str, value_render: str, date_time_render: str
) -> dict[str, Any]:
    """The ValueRange for a resolved range."""
    sheet = resolved.sheet
    last_data_row = min(resolved.r1, len(sheet.rows) - 1)
    matrix: list[list[Any]] = []
    for r in range(resolved.r0, last_data_row + 1):
        line = sheet.rows[r]
        stop = min(resolved.c1, len(line) - 1)
        matrix.append(
            [render(line[c], value_render, date_time_render) for c in range(resolved.c0, stop + 1)]
        )
    major = "COLUMNS" if major_dimension == "COLUMNS" else "ROWS"
    if major == "COLUMNS":
        width = max((len(row) for row in matrix), default=0)
        matrix = [[row[c] if c < len(row) else None for row in matrix] for c in range(width)]
    values = [_trim(line) for line in matrix]
    while values and not values[-1]:
        values.pop()
    out: dict[str, Any] = {"range": resolved.a1, "majorDimension": major}
    if values:
        out["values"] = values
    return out


def _trim(line: Sequence[Any]) -> list[Any]:
    end = len(line)
    while end and line[end - 1] is None:
        end -= 1
    return ["" if v is None else v for v in line[:end]]


# -- the service ----------------------------------------------------------------------------
PER_USER_LIMIT = ("Read requests per minute per user", "ReadRequestsPerMinutePerUser")
PER_PROJECT_LIMIT = ("Read requests per minute", "ReadRequestsPerMinutePerProject")


def read_quota_error(project: str, label: str, limit_name: str, limit: int) -> Response:
    """The 429 RESOURCE_EXHAUSTED Google sends when a per-minute read quota is used up."""
    consumer = f"project_number:{project}"
    return google_error(
        429,
        f"Quota exceeded for quota metric 'Read requests' and limit '{label}' of "
        f"service '{SERVICE}' for consumer '{consumer}'.",
        details=[
            error_info(
                "RATE_LIMIT_EXCEEDED",
                "googleapis.com",
                {
                    "consumer": f"projects/{project}",
                    "quota_limit": limit_name,
                    "quota_limit_value": str(limit),
                    "quota_location": "global",
                    "quota_metric": f"{SERVICE}/read_requests",
                    "service": SERVICE,
                },
            ),
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [
                    {
                        "description": "Request a higher quota limit.",
                        "url": "https://cloud.google.com/docs/quotas/help/request_increase",
                    }
                ],
            },
        ],
    )


@dataclass
class SheetsService:
    clock: SandboxClock
    oauth: OAuthServer
    read_requests_per_minute_per_user: int = 60
    read_requests_per_minute_per_project: int = 300
    spreadsheets: dict[str, Spreadsheet] = field(default_factory=dict)
    requests_served: int = 0
    _user_window: dict[str, deque[float]] = field(default_factory=dict)
    _project_window: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def add_spreadsheet(
        self,
        spreadsheet_id: str,
        sheets: dict[str, Iterable[Iterable[CellInput]]] | Sequence[Sheet],
        *,
        title: str = "Untitled spreadsheet",
        named_ranges: dict[str, str] | None = None,
    ) -> Spreadsheet:
        """Define a spreadsheet: `{"Sheet 1": [[cell, ...], ...]}` (rows of cells or plain
        values; None is an empty cell) or a list of `Sheet` (to set grid sizes)."""
        if isinstance(sheets, dict):
            tabs = [Sheet(name, [list(row) for row in rows]) for name, rows in sheets.items()]
        else:
            tabs = list(sheets)
        if not tabs:
            raise ValueError("a spreadsheet has at least one sheet")
        with self._lock:
            spreadsheet = Spreadsheet(spreadsheet_id, tabs, title, dict(named_ranges or {}))
            self.spreadsheets[spreadsheet_id] = spreadsheet
            return spreadsheet

    def reset_quota(self) -> None:
        with self._lock:
            self._user_window.clear()
            self._project_window.clear()

    def _admit(self, user: str, project: str) -> Response | None:
        """Count one read request, or the 429 Google sends when a per-minute quota is used up."""
        now = self.clock.monotonic()
        with self._lock:
            windows = (
                (
                    self._user_window,
                    user,
                    self.read_requests_per_minute_per_user,
                    *PER_USER_LIMIT,
                ),
                (
                    self._project_window,
                    project,
                    self.read_requests_per_minute_per_project,
                    *PER_PROJECT_LIMIT,
                ),
            )
            for store, key, limit, label, limit_name in windows:
                window = store.setdefault(key, deque())
                while window and window[0] <= now - 60:
                    window.popleft()
                if len(window) >= limit:
                    return read_quota_error(project, label, limit_name, limit)
            for store, key, *_ in windows:
                store[key].append(now)
            self.requests_served += 1
        return None

    def handle(
        self,
        token: AccessToken,
        spreadsheet_id: str,
        ranges: list[str],
        params: dict[str, str],
        batch: bool,
    ) -> Response:
        options: dict[str, str] = {}
        for name, field_name, allowed, default, enum_type in (
            (
                "valueRenderOption",
                "value_render_option",
                VALUE_RENDER_OPTIONS,
                "FORMATTED_VALUE",
                "ValueRenderOption",
            ),
            (
                "dateTimeRenderOption",
                "date_time_render_option",
                DATE_TIME_RENDER_OPTIONS,
                "SERIAL_NUMBER",
                "DateTimeRenderOption",
            ),
            ("majorDimension", "major_dimension", MAJOR_DIMENSIONS, "ROWS", "Dimension"),
        ):
            value = params.get(name, default)
            if value not in allowed:
                message = (
                    f"Invalid value at '{field_name}' "
                    f'(type.googleapis.com/google.apps.sheets.v4.{enum_type}), "{value}"'
                )
                return google_error(
                    400,
                    message,
                    details=[
                        {
                            "@type": "type.googleapis.com/google.rpc.BadRequest",
                            "fieldViolations": [{"field": field_name, "description": message}],
                        }
                    ],
                )
            options[name] = value
        project = self.oauth.project_number(token.client_id)
        refused = self._admit(f"{project}:{token.user}", project)
        if refused is not None:
            return refused
        with self._lock:
            spreadsheet = self.spreadsheets.get(spreadsheet_id)
            if spreadsheet is None:
                return google_error(404, "Requested entity was not found.")
            value_ranges = []
            for text in ranges:
                try:
                    resolved = resolve_range(spreadsheet, text)
                except RangeError:
                    return google_error(400, f"Unable to parse range: {text}")
                except ValueError as exc:
                    return google_error(400, str(exc))
                value_ranges.append(
                    read_values(
                        resolved,
                        options["majorDimension"],
                        options["valueRenderOption"],
                        options["dateTimeRenderOption"],
                    )
                )
        if not batch:
            return JSONResponse(value_ranges[0])
        body: dict[str, Any] = {"spreadsheetId": spreadsheet_id}
        if value_ranges:
            body["valueRanges"] = value_ranges
        return JSONResponse(body)


def sheets_routes(service: SheetsService, oauth: OAuthServer, faults: FaultPlan) -> list[Route]:
    def authenticate(request: Request) -> AccessToken | Response:
        return oauth.authenticate(request.headers.get("authorization"), _SCOPES, SERVICE)

    def scripted_quota_error(request: Request) -> Callable[[Fault], Response]:
        def build(fault: Fault) -> Response:
            # The per-user limit is the one a single connector runs into (60 a minute).
            token = oauth.lookup(request.headers.get("authorization"))
            project = oauth.project_number(token.client_id) if token else "0"
            return read_quota_error(
                project, *PER_USER_LIMIT, service.read_requests_per_minute_per_user
            )

        return build

    async def values_get(request: Request) -> Response:
        async def handle() -> Response:
            auth = authenticate(request)
            if isinstance(auth, Response):
                return auth
            return service.handle(
                auth,
                request.path_params["spreadsheet_id"],
                [request.path_params["range"]],
                dict(request.query_params),
                batch=False,
            )

        return await faults.run("sheets", handle, quota_error=scripted_quota_error(request))

    async def values_batch_get(request: Request) -> Response:
        async def handle() -> Response:
            auth = authenticate(request)
            if isinstance(auth, Response):
                return auth
            return service.handle(
                auth,
                request.path_params["spreadsheet_id"],
                request.query_params.getlist("ranges"),
                dict(request.query_params),
                batch=True,
            )

        return await faults.run("sheets", handle, quota_error=scripted_quota_error(request))

    return [
        Route(
            "/v4/spreadsheets/{spreadsheet_id}/values:batchGet", values_batch_get, methods=["GET"]
        ),
        Route("/v4/spreadsheets/{spreadsheet_id}/values/{range:path}", values_get, methods=["GET"]),
    ]
