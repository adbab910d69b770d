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

Layout: cells and their rendering (cells.py), spreadsheets and A1 ranges (grid.py), quotas
and routes (service.py).
"""

from kpi_pipelines.sandbox.google.sheets.cells import (
    SERIAL_EPOCH,
    Bool,
    Cell,
    CellInput,
    DateTime,
    ErrorValue,
    Formula,
    Number,
    Text,
    currency,
    format_datetime,
    format_number,
    percent,
    render,
    to_cell,
)
from kpi_pipelines.sandbox.google.sheets.grid import (
    DEFAULT_COLUMNS,
    DEFAULT_ROWS,
    RangeError,
    ResolvedRange,
    Sheet,
    Spreadsheet,
    column_letters,
    quote_sheet_title,
    read_values,
    resolve_range,
)
from kpi_pipelines.sandbox.google.sheets.service import (
    DATE_TIME_RENDER_OPTIONS,
    MAJOR_DIMENSIONS,
    PER_PROJECT_LIMIT,
    PER_USER_LIMIT,
    SERVICE,
    VALUE_RENDER_OPTIONS,
    SheetsErrors,
    SheetsService,
    read_quota_error,
    sheets_routes,
)

__all__ = [
    "DATE_TIME_RENDER_OPTIONS",
    "DEFAULT_COLUMNS",
    "DEFAULT_ROWS",
    "MAJOR_DIMENSIONS",
    "PER_PROJECT_LIMIT",
    "PER_USER_LIMIT",
    "SERIAL_EPOCH",
    "SERVICE",
    "VALUE_RENDER_OPTIONS",
    "Bool",
    "Cell",
    "CellInput",
    "DateTime",
    "ErrorValue",
    "Formula",
    "Number",
    "RangeError",
    "ResolvedRange",
    "Sheet",
    "SheetsErrors",
    "SheetsService",
    "Spreadsheet",
    "Text",
    "column_letters",
    "currency",
    "format_datetime",
    "format_number",
    "percent",
    "quote_sheet_title",
    "read_quota_error",
    "read_values",
    "render",
    "resolve_range",
    "sheets_routes",
    "to_cell",
]
