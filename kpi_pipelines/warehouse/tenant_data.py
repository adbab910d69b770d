"""Reads and manual edits of one workspace's KPI data (always as kpi_tenant, scoped)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.engine import Connection

from kpi_pipelines.models import KPIData
from kpi_pipelines.warehouse.control import get_workspace
from kpi_pipelines.warehouse.database import Warehouse


class StoredPoint(BaseModel):
    source: str
    metric: str
    timestamp: datetime
    dimensions: dict[str, str]
    value: float
    metadata: dict[str, Any]
    origin: str
    changed_by: str


class Override(BaseModel):
    id: int
    source: str
    metric: str
    timestamp: datetime
    dimensions_key: str
    value: float
    reason: str | None
    set_by: str
    set_at: datetime
    superseded_at: datetime | None
    superseded_by: str | None


def set_override(
    warehouse: Warehouse, point: KPIData, *, user: str, reason: str | None = None
) -> None:
    """A user's value for one key; it stands until the source's next sync writes that key."""
    actor = f"user:{user}"
    params = {
        "source": point.source,
        "metric": point.metric,
        "ts": point.timestamp,
        "dk": point.dimensions_key,
        "dims": point.dimensions,
        "value": point.value,
        "meta": point.metadata,
        "reason": reason,
    }
    with warehouse.tenant(point.workspace_id, actor=actor) as db:
        get_workspace(db, point.workspace_id)  # a clear error for an unknown workspace
        db.execute(
            sa.text(
                "SELECT kpi.set_override(:source, :metric, :ts, :dk, CAST(:dims AS jsonb),"
                " :value, CAST(:meta AS jsonb), :reason)"
            ).bindparams(sa.bindparam("dims", type_=sa.JSON), sa.bindparam("meta", type_=sa.JSON)),
            params,
        )


def list_overrides(warehouse: Warehouse, workspace_id: str) -> list[Override]:
    with warehouse.tenant(workspace_id, actor="cli") as db:
        rows = db.execute(
            sa.text(
                'SELECT id, source, metric, "timestamp", dimensions_key, value, reason, set_by,'
                " set_at, superseded_at, superseded_by FROM manual_overrides"
                " ORDER BY set_at, id"
            )
        ).mappings()
        return [Override(**row) for row in rows]


def read_points(
    warehouse: Warehouse,
    workspace_id: str,
    *,
    source: str | None = None,
    metric: str | None = None,
    since: datetime | None = None,
) -> list[StoredPoint]:
    query = (
        'SELECT source, metric, "timestamp", dimensions, value, metadata, origin, changed_by'
        " FROM kpi_data WHERE true"
    )
    params: dict[str, Any] = {}
    if source:
        query += " AND source = :source"
        params["source"] = source
    if metric:
        query += " AND metric = :metric"
        params["metric"] = metric
    if since:
        query += ' AND "timestamp" >= :since'
        params["since"] = since
    query += ' ORDER BY source, metric, "timestamp", dimensions_key'
    with warehouse.tenant(workspace_id, actor="cli") as db:
        return [StoredPoint(**row) for row in db.execute(sa.text(query), params).mappings()]


def latest_points(warehouse: Warehouse, workspace_id: str) -> list[StoredPoint]:
    """Each metric's most recent total (or, for a metric with no total, each breakdown's)."""
    with warehouse.tenant(workspace_id, actor="cli") as db:
        rows = db.execute(
            sa.text(
                'SELECT DISTINCT ON (source, metric, dimensions_key) source, metric, "timestamp",'
                " dimensions, value, metadata, origin, changed_by FROM kpi_data k"
                " WHERE dimensions_key = '' OR NOT EXISTS (SELECT 1 FROM kpi_data t"
                "   WHERE t.source = k.source AND t.metric = k.metric AND t.dimensions_key = '')"
                ' ORDER BY source, metric, dimensions_key, "timestamp" DESC'
            )
        ).mappings()
        return [StoredPoint(**row) for row in rows]


def load_cursor(db: Connection, source: str, stream: str) -> dict[str, Any] | None:
    """A sync's saved position (in the caller's tenant transaction)."""
    return db.execute(
        sa.text("SELECT cursor FROM sync_state WHERE source = :source AND stream = :stream"),
        {"source": source, "stream": stream},
    ).scalar()


def save_cursor(db: Connection, source: str, stream: str, cursor: dict[str, Any]) -> None:
    """Keep a sync's position (in the caller's tenant transaction)."""
    db.execute(
        sa.text("SELECT kpi.save_cursor(:source, :stream, CAST(:cursor AS jsonb))").bindparams(
            sa.bindparam("cursor", type_=sa.JSON)
        ),
        {"source": source, "stream": stream, "cursor": cursor},
    )


def analyze_raw_records(db: Connection) -> None:
    """Refresh raw_records' statistics (migration 0012), after a landing large enough that
    the metrics over it would be planned from what the table held before."""
    db.execute(sa.text("SELECT kpi.analyze_raw_records()"))
