"""What a google_sheets connection stores, and the Sheets API's ValueRange."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from kpi_pipelines.integrations.shared.connection_settings import ConnectionSettings
from kpi_pipelines.integrations.shared.tabular import TabularMapping

_SPREADSHEET_URL = re.compile(r"/spreadsheets/d/([A-Za-z0-9_-]+)")


class SheetsConnectionSettings(ConnectionSettings):
    """A sheet range and how its columns map to KPI points (the same mapping as CSV).

    `value_render_option`: UNFORMATTED_VALUE (default) reads numbers as numbers and dates as
    serial numbers, whatever the cells' display format, so "$1,234.50" arrives as 1234.5 and
    a percent as its fraction; FORMATTED_VALUE reads what the sheet shows, as text, which
    the mapping must then describe (date_formats, separators, currency symbols).
    """

    # The sheet's address may be pasted: only its id is kept (and checked).
    pasted_urls: ClassVar[frozenset[str]] = frozenset({"spreadsheet_id"})

    spreadsheet_id: str
    # A1 notation with the header row first, e.g. "'Marketing KPIs'!A1:E" (quote a sheet
    # name with spaces or punctuation, doubling a quote inside it) or a bare sheet name.
    range: str
    mapping: TabularMapping
    value_render_option: Literal["UNFORMATTED_VALUE", "FORMATTED_VALUE"] = "UNFORMATTED_VALUE"

    @field_validator("spreadsheet_id", mode="before")
    @classmethod
    def _spreadsheet_id(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        value = value.strip()
        found = _SPREADSHEET_URL.search(value)
        if found:  # a pasted https://docs.google.com/spreadsheets/d/<id>/edit#gid=0
            value = found.group(1)
        if not re.fullmatch(r"[A-Za-z0-9_-]{10,}", value):
            raise ValueError(
                f"spreadsheet_id {value!r} is not a spreadsheet id: use the part of the sheet's"
                " address between /d/ and /edit"
            )
        return value

    @field_validator("range")
    @classmethod
    def _range(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("range must name the cells to read, e.g. \"'Sheet 1'!A1:D\"")
        return value


class ValueRange(BaseModel):
    """`spreadsheets.values.get`: `values` is absent when the range holds nothing."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    range: str = ""
    major_dimension: Literal["ROWS", "COLUMNS", "DIMENSION_UNSPECIFIED"] = "ROWS"
    values: list[list[str | int | float | bool | None]] = Field(default_factory=list)
