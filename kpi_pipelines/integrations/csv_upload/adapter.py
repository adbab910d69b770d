"""CSV uploads: a workspace's own file, imported all-or-nothing through its saved mapping.

The table engine validates and writes it; what is CSV's own is here: the file must be a
regular file of the workspace's own (a drop-folder run takes it from the workspace's drop
folder and archives it afterwards, with the reason when it was rejected), and reading it
(encoding, delimiter, header: parsing.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import PrivateAttr

from kpi_pipelines import settings
from kpi_pipelines.integrations.csv_upload.drop_folder import (
    IMPORTED,
    REJECTED,
    DroppedFile,
    archive,
    confined_elsewhere,
    dropped_file,
    errors_file,
)
from kpi_pipelines.integrations.csv_upload.parsing import CsvTable, read_csv
from kpi_pipelines.integrations.csv_upload.types import CsvConnectionSettings
from kpi_pipelines.integrations.shared.engines.table import TableAdapter
from kpi_pipelines.integrations.shared.tabular import TableRejected
from kpi_pipelines.integrations.shared.validation import validated_settings
from kpi_pipelines.models import SyncResult

PROVIDER = "csv_upload"
T = TypeVar("T")


class CsvUploadError(ValueError):
    """The connection or the file cannot be imported; the message says what to fix."""


class CsvUploadAdapter(TableAdapter):
    """Imports one CSV file per run into kpi_data (the run config names the file)."""

    provider = PROVIDER

    max_bytes: int = 0  # 0: KPI_CSV_MAX_BYTES

    _dropped: DroppedFile | None = PrivateAttr(default=None)
    _csv: CsvTable | None = PrivateAttr(default=None)

    def check_connection(self) -> None:
        self._dropped = self._csv = None  # afresh for every run
        path = self._path()
        workspace_id = self.context.workspace.id
        if self.context.options.get("archive"):
            # A drop-folder run: the file must be waiting in this workspace's own folder.
            # Refused here, it is not archived either: it may not be ours to move.
            self._dropped = dropped_file(path, workspace_id)
        elif confined_elsewhere(path, workspace_id):
            raise CsvUploadError(
                f"{path.name} is in the drop folder of another workspace"
                f" ({settings.csv_drop_dir()}); a workspace imports only its own files"
            )
        self._csv = self._archiving_rejects(self._table)

    def disconnect(self) -> None:
        self._dropped = self._csv = None
        super().disconnect()

    def sync(self) -> SyncResult:
        result = self._archiving_rejects(super().sync)
        if self._dropped is not None:
            archive(self._dropped, IMPORTED)
        return result

    def _archiving_rejects(self, step: Callable[[], T]) -> T:
        """Run `step`; in a drop-folder run a rejected file goes to rejected/ with the reason."""
        try:
            return step()
        except ValueError as exc:
            if self._dropped is None:
                raise
            dropped, self._dropped = self._dropped, None
            if not isinstance(exc, TableRejected) or exc.report is None:
                archive(dropped, REJECTED, errors=str(exc))
                raise
            # The full list goes next to the file, where the folder's owner looks for it.
            archived = archive(
                dropped, REJECTED, errors=exc.describe(listed_below=True), report=exc.report
            )
            exc.report.unlink()
            raise exc.with_report(errors_file(archived)) from None

    # --- the table engine's hooks --------------------------------------------------------

    def table(self) -> CsvTable:
        return self._csv or self._table()

    def point_metadata(self) -> dict[str, Any]:
        return {"file": self._path().name}

    def _settings(self) -> CsvConnectionSettings:
        return validated_settings(
            self.context.connection,
            CsvConnectionSettings,
            error=CsvUploadError,
            problem="an unusable mapping",
        )

    def _path(self) -> Path:
        path: Any = self.context.options.get("path")
        if not path:
            raise CsvUploadError("no CSV file given: set `path` in the run config")
        return Path(path).expanduser()

    def _table(self) -> CsvTable:
        options = self._settings()
        return read_csv(
            self._path(),
            options.mapping,
            max_bytes=self.max_bytes or settings.csv_max_bytes(),
            delimiter=options.delimiter,
            # In a drop folder no folder on the way to the file may become a link.
            anchor=self._dropped.root if self._dropped is not None else None,
        )
