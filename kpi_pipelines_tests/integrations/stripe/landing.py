"""What a workspace has landed, as full rows, to compare a sync under test with a calm one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from kpi_pipelines.warehouse.database import Warehouse

# Every column but the workspace and what says which run wrote a row and when (those differ
# between two workspaces by design; `source_updated_at` is the event time on the incremental
# path and empty on a full read). The subscriptions' history (events landed since the first
# sync, a snapshot per sync) depends on when each sync ran, so only the objects are compared;
# the metrics computed from either history must still be equal.
_RAW = (
    "SELECT stream, record_id, payload FROM raw_records WHERE source = 'stripe'"
    " AND stream NOT IN ('subscription_events', 'subscription_states')"
)
_KPI = (
    'SELECT metric, "timestamp", dimensions_key, dimensions, value, metadata, origin'
    " FROM kpi_data WHERE source = 'stripe'"
)


@dataclass
class Landing:
    raw: dict[tuple[str, str], Any]  # (stream, id) -> payload
    kpi: dict[tuple[Any, ...], tuple[Any, ...]]  # (metric, timestamp, dimensions) -> rest

    def differences(self, other: Landing, limit: int = 8) -> list[str]:
        """What differs, briefly (an empty list: the same rows)."""
        out = []
        for name, mine, theirs in (("raw", self.raw, other.raw), ("kpi", self.kpi, other.kpi)):
            for key in sorted(mine.keys() | theirs.keys(), key=repr):
                if mine.get(key) != theirs.get(key):
                    out.append(
                        f"{name} {key}: {_brief(mine.get(key))} != {_brief(theirs.get(key))}"
                    )
        return out[:limit] + ([f"... {len(out) - limit} more"] if len(out) > limit else [])


def landing(warehouse: Warehouse, workspace_id: str) -> Landing:
    with warehouse.tenant(workspace_id, actor="test") as db:
        raw = {(r.stream, r.record_id): r.payload for r in db.execute(sa.text(_RAW))}
        kpi = {tuple(r[:3]): tuple(r[3:]) for r in db.execute(sa.text(_KPI))}
    return Landing(raw, kpi)


def assert_same_landing(warehouse: Warehouse, workspace_id: str, reference: str) -> None:
    """raw_records and kpi_data of `workspace_id` equal those of `reference`, row for row."""
    differences = landing(warehouse, workspace_id).differences(landing(warehouse, reference))
    assert not differences, "\n".join(differences)


def written_rows(warehouse: Warehouse, workspace_id: str) -> dict[str, list[tuple]]:
    """Every column of the workspace's raw_records, kpi_data and audit_log rows (to show
    that a run wrote nothing: not even a fetched_at or run id changed, no audit row)."""
    out = {}
    with warehouse.tenant(workspace_id, actor="test") as db:
        for table in ("raw_records", "kpi_data", "audit_log"):
            rows = db.execute(sa.text(f"SELECT * FROM {table}")).all()
            out[table] = sorted((tuple(r) for r in rows), key=repr)
    return out


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 160 else text[:160] + "..."
