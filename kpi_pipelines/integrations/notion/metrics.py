"""The objective metrics of kpi-definitions.md, computed in SQL over the landed pages.

One query over raw_records (stream `objectives`) reads each live objective's fields through
the connection's mapping, whatever type holds them: a title or rich text (its plain text),
a status or select (its name), a number, formula or rollup (its number, date or text), a
date (its start), people (their names). Live means: in the configured objectives database
(data source), neither in the trash nor archived, and reachable (a page the integration
can no longer read has left). Progress is the progress property, else value / target,
else 1 when done and 0 otherwise, held to 0..1. The totals are the same query's aggregate.

Points: the daily snapshot (the day the provider's clock says, in the workspace's time
zone) `objectives_total`, `objectives_completed`, `objective_progress` (the mean), and one
`objective_progress` per objective (dimension `objective`: its page id) whose metadata
names its id, title, status, owner, due date, key-result value and target.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from kpi_pipelines.integrations.notion.schema import ObjectiveMapping
from kpi_pipelines.models import KPIData, day_timestamp

SOURCE = "notion"
METRICS = ("objectives_total", "objectives_completed", "objective_progress")
OBJECTIVES = "objectives"
NOTE_PAGES = "note_pages"
# What a live landed page `p` is: in the configured database, not trashed, reachable.
LIVE = """
    p.source = 'notion' AND p.stream = :stream
    AND p.payload->'parent'->>CAST(:parent_key AS text) = :parent_id
    AND coalesce(p.payload->>'in_trash', 'false') <> 'true'
    AND coalesce(p.payload->>'archived', 'false') <> 'true'
    AND NOT (p.record_id = ANY(CAST(:unreachable AS text[])))
"""

# Readers of a property value (`{v}`: its JSON), by what the role wants of it.
_TEXT_ITEMS = (
    "(SELECT string_agg(x.item->>'plain_text', '' ORDER BY x.n)"
    " FROM jsonb_array_elements({v}->{k}) WITH ORDINALITY AS x(item, n))"
)
TEXT = f"""CASE {{v}}->>'type'
    WHEN 'title' THEN {_TEXT_ITEMS.replace("{k}", "'title'")}
    WHEN 'rich_text' THEN {_TEXT_ITEMS.replace("{k}", "'rich_text'")}
    WHEN 'select' THEN {{v}}->'select'->>'name'
    WHEN 'status' THEN {{v}}->'status'->>'name'
    WHEN 'checkbox' THEN CASE WHEN ({{v}}->>'checkbox')::boolean THEN 'checked' ELSE 'unchecked' END
    WHEN 'formula' THEN coalesce({{v}}->'formula'->>'string', {{v}}->'formula'->>'boolean')
    WHEN 'people' THEN (SELECT string_agg(x.item->>'name', ', ' ORDER BY x.n)
        FROM jsonb_array_elements({{v}}->'people') WITH ORDINALITY AS x(item, n))
END"""
NUMBER = """CASE {v}->>'type'
    WHEN 'number' THEN ({v}->>'number')::float8
    WHEN 'formula' THEN CASE WHEN {v}->'formula'->>'type' = 'number'
        THEN ({v}->'formula'->>'number')::float8 END
    WHEN 'rollup' THEN CASE WHEN {v}->'rollup'->>'type' = 'number'
        THEN ({v}->'rollup'->>'number')::float8 END
END"""
DATE = """left(CASE {v}->>'type'
    WHEN 'date' THEN {v}->'date'->>'start'
    WHEN 'formula' THEN {v}->'formula'->'date'->>'start'
    WHEN 'rollup' THEN {v}->'rollup'->'date'->>'start'
END, 10)"""
DONE = """CASE {v}->>'type'
    WHEN 'checkbox' THEN ({v}->>'checkbox')::boolean
    WHEN 'formula' THEN CASE WHEN {v}->'formula'->>'type' = 'boolean'
        THEN coalesce(({v}->'formula'->>'boolean')::boolean, false)
        ELSE coalesce({v}->'formula'->>'string' = ANY(CAST(:done AS text[])), false) END
    ELSE coalesce(({text}) = ANY(CAST(:done AS text[])), false)
END"""


def _value(role: str) -> str:
    return f"(p.payload->'properties'->CAST(:{role} AS text))"


def metrics_query(mapping: ObjectiveMapping) -> str:
    """One row per live objective (`objective` set) and the totals row (`objective` NULL,
    with `total` and `completed`)."""
    status = _value("status")
    status_text = TEXT.format(v=status)
    fields = f"""
SELECT p.record_id AS objective,
       {TEXT.format(v=_value("title"))} AS title,
       {status_text if mapping.status else "NULL"} AS status,
       {DONE.format(v=status, text=status_text) if mapping.status else "false"} AS done,
       {_number(mapping.progress, "progress")} AS progress_value,
       {_number(mapping.value, "value")} AS value,
       {_number(mapping.target, "target")} AS target,
       {TEXT.format(v=_value("owner")) if mapping.owner else "NULL"} AS owner,
       {DATE.format(v=_value("due")) if mapping.due else "NULL"} AS due
FROM raw_records p
WHERE {LIVE}
"""
    return f"""
WITH objective AS ({fields}),
scored AS (
    SELECT *, greatest(0.0, least(1.0, coalesce(
        progress_value,
        CASE WHEN target > 0 AND value IS NOT NULL THEN value / target END,
        CASE WHEN done THEN 1.0 ELSE 0.0 END))) AS progress
    FROM objective
)
SELECT objective, title, status, done, progress, value, target, owner, due,
       NULL::bigint AS total, NULL::bigint AS completed
FROM scored
UNION ALL
SELECT NULL, NULL, NULL, NULL, avg(progress), NULL, NULL, NULL, NULL,
       count(*), count(*) FILTER (WHERE done)
FROM scored
ORDER BY 1 NULLS FIRST
"""


def _number(prop: str | None, role: str) -> str:
    return NUMBER.format(v=_value(role)) if prop else "NULL::float8"


@dataclass(frozen=True)
class MetricsScope:
    workspace_id: str
    day: date  # the snapshot's day: the provider's today in the workspace's time zone
    observed_at: datetime  # the provider's clock when the sync read the pages
    mapping: ObjectiveMapping
    parent_key: str  # "data_source_id" (2025-09-03) or "database_id" (2022-06-28)
    parent_id: str
    unreachable: Sequence[str]


def compute_objective_metrics(db: Connection, scope: MetricsScope) -> Iterator[dict[str, Any]]:
    mapping = scope.mapping
    params = {
        "stream": OBJECTIVES,
        "parent_key": scope.parent_key,
        "parent_id": scope.parent_id,
        "unreachable": list(scope.unreachable),
        "done": list(mapping.done),
        **{
            role: getattr(mapping, role) or ""
            for role in ("title", "status", "progress", "value", "target", "owner", "due")
        },
    }
    for row in db.execute(sa.text(metrics_query(mapping)), params).mappings():
        yield dict(row)


def metric_points(scope: MetricsScope, row: dict[str, Any]) -> list[KPIData]:
    """The totals row -> the day's three totals (no mean without objectives); an
    objective's row -> its progress point, with its fields in the metadata."""
    timestamp = day_timestamp(scope.day)
    base = {"granularity": "day"}

    def point(metric: str, amount: float, **extra: Any) -> KPIData:
        dimensions = {"objective": extra["id"]} if "id" in extra else {}
        return KPIData(
            value=round(float(amount), 6),
            timestamp=timestamp,
            metadata={**base, **extra},
            source=SOURCE,
            workspace_id=scope.workspace_id,
            metric=metric,
            dimensions=dimensions,
            source_ts=scope.observed_at,
        )

    if row["objective"] is None:
        total, completed = int(row["total"]), int(row["completed"])
        points = [point("objectives_total", total), point("objectives_completed", completed)]
        if total:
            points.append(point("objective_progress", row["progress"]))
        return points
    mapping = scope.mapping
    fields: dict[str, Any] = {
        "dimension": "objective",
        "id": row["objective"],
        "title": row["title"],
    }
    for role in ("status", "owner", "due", "value", "target"):
        if getattr(mapping, role):
            fields[role] = row[role]
    if mapping.status:
        fields["done"] = bool(row["done"])
    return [point("objective_progress", row["progress"], **fields)]
