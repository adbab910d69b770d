"""Google Sheets: a sheet range imported all-or-nothing through the connection's mapping.

The table engine imports it, with the same mapping and validation as CSV uploads
(`integrations/shared/tabular.py`): the first non-empty row of the range is the header;
every row is checked before anything is written, a bad row rejects the whole sheet with
its errors named by sheet row number (the first rows in full in a bounded report), and
the valid sheet is written in one transaction.

Read with `spreadsheets.values.get` (`valueRenderOption` UNFORMATTED_VALUE and
`dateTimeRenderOption` SERIAL_NUMBER by default: numbers are numbers and dates are serial
numbers, whatever their display format; FORMATTED_VALUE is a connection setting). The
range goes in the URL path fully percent-encoded (a quoted sheet name may hold spaces,
quotes, '/', '#' or '?'). The API drops trailing empty cells and rows (ragged rows are
padded) and leaves `values` out for an empty range, which is its own error. The per-minute
read quota (HTTP 429 RESOURCE_EXHAUSTED) is waited out with truncated exponential backoff
as Google recommends (2, 4, 8 ... 64 s plus jitter).
"""

from __future__ import annotations

import random
import re
import time
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
from pydantic import PrivateAttr, ValidationError

from kpi_pipelines.integrations.google_sheets.types import SheetsConnectionSettings, ValueRange
from kpi_pipelines.integrations.shared.engines.table import TableAdapter
from kpi_pipelines.integrations.shared.errors import ProviderError, ProviderRequestError
from kpi_pipelines.integrations.shared.http import RetryDecision
from kpi_pipelines.integrations.shared.oauth import (
    GoogleApiAdapter,
)
from kpi_pipelines.integrations.shared.tabular import NumberedRows, TableFormatError, parse_table
from kpi_pipelines.integrations.shared.validation import validated_settings

PROVIDER = "google_sheets"
DEFAULT_BASE_URL = "https://sheets.googleapis.com"
_CELLS = re.compile(r"\$?([A-Za-z]{0,3})\$?([0-9]*)")

Cell = str | int | float | bool | None


def _sleep(seconds: float) -> None:
    """How the HTTP client waits between retries (tests replace it to move a sandbox clock)."""
    time.sleep(seconds)


class SheetsImportError(ValueError):
    """The connection or the sheet cannot be imported; the message says what to fix."""


class _QuotaBackoff:
    """Google's truncated exponential backoff for per-minute quotas: 2**n s + jitter."""

    def __init__(self, maximum: float, rng: random.Random | None = None) -> None:
        self.maximum = maximum
        self.hits = 0
        self._rng = rng or random.Random()

    def __call__(self, response: httpx.Response) -> RetryDecision | None:
        if response.status_code != 429:
            if response.status_code < 400:
                self.hits = 0
            return None
        self.hits += 1
        wait = min(2.0**self.hits + self._rng.random(), self.maximum)
        return RetryDecision(retry=True, wait=wait)


class GoogleSheetsAdapter(GoogleApiAdapter, TableAdapter):
    """Imports one sheet range per run into kpi_data (manual: the UI or the CLI)."""

    provider: ClassVar[str] = PROVIDER
    default_base_url: ClassVar[str] = DEFAULT_BASE_URL

    max_attempts: int = 8  # with backoff up to 64 s: outlasts a per-minute quota window
    backoff_max_seconds: float = 64.0

    _table: NumberedRows | None = PrivateAttr(default=None)
    _valid_settings: SheetsConnectionSettings | None = PrivateAttr(default=None)

    def check_connection(self) -> None:
        """Read the range and check its header against the mapping (one request)."""
        self._valid_settings = None  # read afresh for every run
        connection_settings = self._settings()
        self._open_google_api(
            max_attempts=self.max_attempts,
            backoff_max=self.backoff_max_seconds,
            classify=_QuotaBackoff(self.backoff_max_seconds),
            sleep=lambda seconds: _sleep(seconds),
        )
        self._table = self._fetch(connection_settings)

    def disconnect(self) -> None:
        self._table = self._valid_settings = None
        super().disconnect()

    # --- the table engine's hooks --------------------------------------------------------

    def table(self) -> NumberedRows:
        return self._table or self._fetch(self._settings())

    def point_metadata(self) -> dict[str, Any]:
        connection_settings = self._settings()
        return {
            "spreadsheet_id": connection_settings.spreadsheet_id,
            "range": self._range(connection_settings),
        }

    # --- reading ----------------------------------------------------------------------------

    def _fetch(self, connection_settings: SheetsConnectionSettings) -> NumberedRows:
        assert self._api is not None, "connect() first"
        spreadsheet_id = connection_settings.spreadsheet_id
        a1 = self._range(connection_settings)
        unformatted = connection_settings.value_render_option == "UNFORMATTED_VALUE"
        path = f"/v4/spreadsheets/{quote(spreadsheet_id, safe='')}/values/{quote(a1, safe='')}"
        try:
            data = self._api.http.get_json(
                path,
                params={
                    "majorDimension": "ROWS",
                    "valueRenderOption": connection_settings.value_render_option,
                    "dateTimeRenderOption": "SERIAL_NUMBER" if unformatted else "FORMATTED_STRING",
                },
            )
        except ProviderRequestError as exc:
            if exc.status == 404:
                raise SheetsImportError(
                    f"spreadsheet {spreadsheet_id} was not found: check the spreadsheet_id and"
                    " that the sheet is shared with the Google account this workspace connected"
                ) from None
            if exc.status == 400:
                raise SheetsImportError(
                    f"the Sheets API refused the range {a1!r} of spreadsheet {spreadsheet_id}:"
                    f" {exc.detail}. Check the sheet name (quote it, as 'Sheet 1'!A1:D, when it"
                    " has spaces or punctuation) and the cells"
                ) from None
            raise
        try:
            value_range = ValueRange.model_validate(data)
        except ValidationError as exc:
            raise ProviderError(
                PROVIDER, f"values.get returned a body that is not a ValueRange: {exc.errors()[:2]}"
            ) from None
        echoed = value_range.range or a1
        source = f"sheet range {echoed} of spreadsheet {spreadsheet_id}"
        if not value_range.values:
            raise TableFormatError(
                source,
                "is empty: the Sheets API returned no values for it (check that the range"
                " names the sheet and cells that hold the table, header row first)",
            )
        first_line = _first_row(echoed)
        numbered = [(first_line + index, row) for index, row in enumerate(value_range.values)]
        header_at = next((i for i, (_, row) in enumerate(numbered) if _has_content(row)), None)
        if header_at is None:
            raise TableFormatError(source, "is empty: every row of the range is blank")
        header_line, header = numbered[header_at]
        # The header against the mapping now, so connect() says what is wrong with it.
        parse_table(header, (), connection_settings.mapping, source=source)
        return NumberedRows(
            source=source,
            name=f"{spreadsheet_id}-{a1}",
            mapping=connection_settings.mapping,
            header_line=header_line,
            header=header,
            records=numbered[header_at + 1 :],
        )

    def _range(self, connection_settings: SheetsConnectionSettings) -> str:
        override = self.context.options.get("range")
        return str(override).strip() if override else connection_settings.range

    def _settings(self) -> SheetsConnectionSettings:
        if self._valid_settings is None:
            self._valid_settings = validated_settings(
                self.context.connection, SheetsConnectionSettings, error=SheetsImportError
            )
        return self._valid_settings


def _first_row(a1: str) -> int:
    """The sheet row number where an (echoed, sheet-qualified) A1 range starts."""
    cells = a1.rsplit("!", 1)[-1].split(":", 1)[0]
    match = _CELLS.fullmatch(cells)
    if match and match.group(2):
        return int(match.group(2))
    return 1


def _has_content(row: list[Any]) -> bool:
    return any(
        cell not in (None, "") and not (isinstance(cell, str) and not cell.strip()) for cell in row
    )
