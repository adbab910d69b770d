"""The table engine: a user's own table (a CSV file, a sheet range), all-or-nothing.

The table is the user's submission, not a provider's records: every row is checked first
(`Table.validate` raises TableRejected naming the bad rows, with a bounded report under
KPI_HOME/rejections/ when there are more than the message shows, kept for the retention),
and only a valid table is written, in one transaction. A table with a row that holds a
secret this deployment uses (the record guard of bounds.py: a key or token echoed back by
the provider, or pasted into a file) is refused whole, naming the line and never the value.
The provider's hooks say where the table comes from (`table()`, usually read by
`connect()`) and what its points carry (`point_metadata()`); rows become points here, the
same way for every table provider.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kpi_pipelines.integrations.shared.base_adapter import IntegrationAdapter
from kpi_pipelines.integrations.shared.bounds import RecordGuard
from kpi_pipelines.integrations.shared.engines import Engine
from kpi_pipelines.integrations.shared.rejection_reports import (
    prune_rejection_reports,
    rejection_report_path,
)
from kpi_pipelines.integrations.shared.tabular import (
    Table,
    TableFormatError,
    TableRejected,
    TabularRow,
)
from kpi_pipelines.models import KPIData, SyncResult, day_timestamp


class TableAdapter(IntegrationAdapter):
    """The table engine's hooks."""

    @abstractmethod
    def table(self) -> Table:
        """The table to import."""

    @abstractmethod
    def point_metadata(self) -> dict[str, Any]:
        """What every point of the table carries besides its granularity (its file, its
        spreadsheet and range)."""

    def transform(self, raw: TabularRow) -> list[KPIData]:
        """One valid row -> its one daily point."""
        return [
            KPIData(
                value=raw.value,
                timestamp=day_timestamp(raw.day),
                metadata={"granularity": "day", **self.point_metadata()},
                source=self.provider,
                workspace_id=self.context.workspace.id,
                metric=raw.metric,
                # A blank breakdown cell means the row is not broken down by that column.
                dimensions={k: v for k, v in raw.dimensions.items() if v},
            )
        ]


@dataclass(frozen=True)
class TableEngine(Engine):
    """Validate the whole table, then write every point in one transaction."""

    kind = "table"

    @property
    def hooks(self) -> type[TableAdapter]:
        return TableAdapter

    def describe(self) -> str:
        return "table (all-or-nothing)"

    def sync(self, adapter: TableAdapter) -> SyncResult:
        context = adapter.context
        started = datetime.now(UTC)
        table = adapter.table()
        # Every row first: a bad row rejects the table and nothing is written.
        try:
            count = table.validate(
                report=rejection_report_path(context.workspace.id, context.run_id, table.name)
            )
        except TableRejected as rejected:
            if rejected.report is not None:  # a new report: the retention removes old ones
                prune_rejection_reports()
            raise
        guard = RecordGuard(adapter.spec.limits.record())
        writer = adapter.point_writer(single_transaction=True)
        with writer.open():  # one transaction: a refusal below leaves nothing written
            for row in table.rows():
                if problem := guard.problem_of([row.metric, row.dimensions]):
                    raise TableFormatError(
                        table.source, f"line {row.line}: {problem}; nothing of it was imported"
                    )
                writer.add_all(adapter.transform(row))
        context.log.info(
            f"imported {count} row(s) from {table.source}: {writer.stats.inserted} new,"
            f" {writer.stats.updated} changed"
        )
        return SyncResult(
            success=True,
            records_processed=count,
            points_written=writer.stats.written,
            points_unchanged=writer.stats.unchanged,
            last_sync_at=started,
        )
