"""Spreadsheets, their sheets, and A1 ranges resolved and read as the values API reads them."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kpi_pipelines.sandbox.google.sheets.cells import Cell, CellInput, render, to_cell

DEFAULT_ROWS = 1000
DEFAULT_COLUMNS = 26


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
