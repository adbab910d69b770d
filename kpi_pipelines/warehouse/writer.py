"""The one write path for every provider: COPY into a staging table, then one merge.

Each call runs inside the caller's tenant transaction (see Warehouse.tenant), so a batch is
all or nothing and a rerun after a crash writes no duplicates. The tenant role may only
INSERT into the staging table; the merge is the owner's SECURITY DEFINER function
(`kpi.merge_kpi_stage()`, migrations 0004 and 0009), which row-level security still scopes
to the transaction's proved workspace. It first reads the stored row of each staged key, so
that a row which changes nothing is neither written nor locked, then inserts the new keys
and updates the changed ones. Conflict resolution (DESIGN.md):

- a source overwrites its own earlier value when the new value's source timestamp is not
  older than the stored one, and only when something actually changed;
- a manual override is replaced by the next sync of its source that writes the same key
  (the audit trigger records the supersede and closes the override);
- a write whose source timestamp is older than the stored one changes nothing;
- a batch that carries a key twice keeps the newest (by source timestamp).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from psycopg.types.json import Jsonb
from sqlalchemy.engine import Connection

from kpi_pipelines.models import KPIData
from kpi_pipelines.warehouse.database import WorkspaceScopeError

# The staging tables' columns, in the order COPY sends them (kpi.open_kpi_stage() and
# kpi.open_raw_stage() make the tables: migration 0004).
_KPI_COLUMNS = (
    "workspace_id",
    "source",
    "metric",
    '"timestamp"',
    "dimensions_key",
    "dimensions",
    "value",
    "metadata",
    "source_ts",
)
_KPI_TYPES = (
    "text",
    "text",
    "text",
    "timestamptz",
    "text",
    "jsonb",
    "float8",
    "jsonb",
    "timestamptz",
)
_RAW_COLUMNS = ("workspace_id", "source", "stream", "record_id", "payload", "source_updated_at")
_RAW_TYPES = ("text", "text", "text", "text", "jsonb", "timestamptz")


@dataclass
class WriteStats:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    def __iadd__(self, other: WriteStats) -> WriteStats:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        return self

    @property
    def written(self) -> int:
        return self.inserted + self.updated


@dataclass(frozen=True)
class RawRecord:
    """The landing copy of one provider object."""

    stream: str
    record_id: str
    # the object, or its JSON text as the provider sent it (landed without re-encoding)
    payload: dict[str, Any] | bytes
    source_updated_at: datetime | None = None


def scoped_workspace(conn: Connection) -> str:
    """The workspace the transaction is proved to be scoped to (Warehouse.tenant)."""
    scope = conn.execute(sa.text("SELECT kpi.current_workspace()")).scalar()
    if not scope:
        raise WorkspaceScopeError("this transaction is not scoped to a workspace")
    return str(scope)


def write_kpis(conn: Connection, points: Sequence[KPIData], *, fetched_at: datetime) -> WriteStats:
    """Upsert one batch of points in the caller's tenant transaction (whose actor the
    audit log records)."""
    if not points:
        return WriteStats()
    scope = scoped_workspace(conn)
    rows = []
    for point in points:
        if point.workspace_id != scope:
            raise WorkspaceScopeError(
                f"refusing to write a {point.source}/{point.metric} point for workspace "
                f"{point.workspace_id!r} in a run for workspace {scope!r}"
            )
        rows.append(staged_kpi_row(point, fetched_at))
    cursor = _copy_into_stage(conn, "kpi_stage", _KPI_COLUMNS, _KPI_TYPES, rows)
    cursor.execute("SELECT inserted, updated FROM kpi.merge_kpi_stage()")
    inserted, updated = cursor.fetchone()
    return WriteStats(inserted=inserted, updated=updated, unchanged=len(rows) - inserted - updated)


def staged_kpi_row(point: KPIData, fetched_at: datetime) -> tuple[Any, ...]:
    """A point as the staging table's columns (_KPI_COLUMNS) take it."""
    return (
        point.workspace_id,
        point.source,
        point.metric,
        point.timestamp,
        point.dimensions_key,
        _jsonb(point.dimensions),
        point.value,
        _jsonb(point.metadata),
        point.source_ts or fetched_at,
    )


def write_raw_records(
    conn: Connection,
    source: str,
    records: Iterable[RawRecord],
    *,
    fetched_at: datetime,
) -> int:
    """Land raw provider objects (last write wins unless the stored copy is newer)."""
    scope = scoped_workspace(conn)
    # A batch may carry an object twice (an event and a later re-read): keep the newest
    # here, so the database need not sort wide rows to find it.
    newest: dict[tuple[str, str], RawRecord] = {}
    for record in records:
        key = (record.stream, record.record_id)
        kept = newest.get(key)
        if kept is None or _newer_or_same(record, kept):
            newest[key] = record
    rows = [
        (scope, source, r.stream, r.record_id, _jsonb(r.payload), r.source_updated_at)
        for r in newest.values()
    ]
    if not rows:
        return 0
    cursor = _copy_into_stage(conn, "raw_stage", _RAW_COLUMNS, _RAW_TYPES, rows)
    cursor.execute("SELECT kpi.merge_raw_stage(%s)", (fetched_at,))
    return int(cursor.fetchone()[0])


def _jsonb(value: Any) -> Jsonb:
    return Jsonb(value, dumps=_json_text)


def _json_text(value: Any) -> bytes:
    # JSON text passes through; msgspec encodes a provider object ~10x faster than json.dumps.
    return value if isinstance(value, bytes) else msgspec.json.encode(value)


def _newer_or_same(record: RawRecord, kept: RawRecord) -> bool:
    if record.source_updated_at is None or kept.source_updated_at is None:
        return kept.source_updated_at is None or record.source_updated_at is not None
    return record.source_updated_at >= kept.source_updated_at


def _copy_into_stage(
    conn: Connection,
    stage: str,
    columns: Sequence[str],
    types: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
) -> Any:
    driver = conn.connection.driver_connection
    assert driver is not None
    cursor = driver.cursor()
    # A temporary table per transaction, made (or emptied) by the owner: dropped at commit,
    # invisible to other sessions, and nothing the tenant can alter.
    cursor.execute(f"SELECT kpi.open_{stage}()")
    with cursor.copy(
        f"COPY pg_temp.{stage} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
    ) as copy:
        copy.set_types(list(types))
        for row in rows:
            copy.write_row(row)
    return cursor
