"""What a csv_upload connection stores in its settings."""

from pydantic import field_validator

from kpi_pipelines.integrations.shared.connection_settings import ConnectionSettings
from kpi_pipelines.integrations.shared.tabular import TabularMapping


class CsvConnectionSettings(ConnectionSettings):
    mapping: TabularMapping
    delimiter: str | None = None  # None: detected from the file

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, value: str | None) -> str | None:
        if value is not None and len(value) != 1:
            raise ValueError(f"delimiter must be one character, got {value!r}")
        return value
