"""CSV uploads: a workspace's own file, imported all-or-nothing through its saved mapping."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import PrivateAttr, ValidationError

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
from kpi_pipelines.integrations.shared.base_adapter import IntegrationAdapter
from kpi_pipelines.integrations.shared.tabular import (
    TableRejected,
    TabularRow,
    rejection_report_path,
)
from kpi_pipelines.models import KPIData, SyncResult, day_timestamp

PROVIDER = "csv_upload"
T = TypeVar("T")


class CsvUploadError(ValueError):
    """The connection or the file cannot be imported; the message says what to fix."""


class CsvUploadAdapter(IntegrationAdapter):
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
        result = self._archiving_rejects(self._import)
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

    def _import(self) -> SyncResult:
        table = self._csv or self._table()
        # Raises with the first bad rows and a report of them all; nothing is written.
        rows = table.validate(
            report=rejection_report_path(
                self.context.workspace.id, self.context.run_id, table.path.name
            )
        )
        writer = self.point_writer(single_transaction=True)
        with writer.open():
            for row in table.rows():
                writer.add_all(self.transform(row))
        self.context.log.info(
            f"imported {rows} row(s) from {table.path.name}: {writer.stats.inserted} new,"
            f" {writer.stats.updated} changed"
        )
        return SyncResult(
            success=True,
            records_processed=rows,
            points_written=writer.stats.written,
            points_unchanged=writer.stats.unchanged,
            last_sync_at=datetime.now(UTC),
        )

    def transform(self, raw: TabularRow) -> list[KPIData]:
        return [
            KPIData(
                value=raw.value,
                timestamp=day_timestamp(raw.day),
                metadata={"granularity": "day", "file": self._path().name},
                source=PROVIDER,
                workspace_id=self.context.workspace.id,
                metric=raw.metric,
                # A blank breakdown cell means the row is not broken down by that column.
                dimensions={k: v for k, v in raw.dimensions.items() if v},
            )
        ]

    def _settings(self) -> CsvConnectionSettings:
        connection = self.context.connection
        try:
            return CsvConnectionSettings.model_validate(connection.settings)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
                for e in exc.errors()
            )
            raise CsvUploadError(
                f"the csv_upload connection {connection.name!r} of workspace"
                f" {connection.workspace_id!r} has an unusable mapping: {problems}"
            ) from None

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
