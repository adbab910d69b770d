"""The neutral models every layer shares: KPIData (one point of kpi_data) and SyncResult (what
one sync did). They import nothing of this project, so anything may import them."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, date, datetime, time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

METRIC_KEY = re.compile(r"^[a-z][a-z0-9_]*$")
MAX_METRIC_CHARS = 63
# A point's key is indexed: its breakdown must stay well under PostgreSQL's limit for a
# btree entry (about 2.7 KB), whatever a tenant puts in a breakdown column.
MAX_DIMENSIONS_KEY_BYTES = 1500


class KPIData(BaseModel):
    """One point of kpi_data: a metric's value for a workspace at a time, per breakdown."""

    model_config = ConfigDict(frozen=True)

    value: float
    timestamp: datetime
    metadata: dict[str, Any] = Field(default_factory=dict)
    source: str
    workspace_id: str
    metric: str
    dimensions: dict[str, str] = Field(default_factory=dict)
    # When the provider last changed this value; None means "when it was fetched".
    source_ts: datetime | None = None

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(f"value must be a finite number, got {value}")
        return value

    @field_validator("metric")
    @classmethod
    def _metric_key(cls, metric: str) -> str:
        if len(metric) > MAX_METRIC_CHARS:
            raise ValueError(f"metric key of {len(metric)} characters; at most {MAX_METRIC_CHARS}")
        if not METRIC_KEY.match(metric):
            raise ValueError(f"metric {metric!r} is not a lowercase snake_case key")
        return metric

    @field_validator("dimensions")
    @classmethod
    def _bounded_breakdown(cls, dimensions: dict[str, str]) -> dict[str, str]:
        problem = breakdown_problem(dimensions)
        if problem:
            raise ValueError(problem)
        return dimensions

    @field_validator("timestamp", "source_ts")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("timestamps must carry a time zone")
        return value

    @property
    def dimensions_key(self) -> str:
        return dimensions_key(self.dimensions)


def dimensions_key(dimensions: dict[str, str]) -> str:
    """Canonical key of a breakdown: '' for the total, else sorted compact JSON."""
    if not dimensions:
        return ""
    return json.dumps(dimensions, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def breakdown_problem(dimensions: dict[str, str]) -> str | None:
    """Why a breakdown is too large to be part of a point's key, or None."""
    size = len(dimensions_key(dimensions).encode())
    if size <= MAX_DIMENSIONS_KEY_BYTES:
        return None
    return (
        f"the breakdown's {len(dimensions)} value(s) take {size} bytes; at most"
        f" {MAX_DIMENSIONS_KEY_BYTES} (shorten them)"
    )


def day_timestamp(day: date) -> datetime:
    """A reporting day is stored as that date's 00:00 UTC (kpi-definitions.md)."""
    return datetime.combine(day, time.min, tzinfo=UTC)


class SyncResult(BaseModel):
    """What one sync did: the spec's fields plus counts the run's metadata shows."""

    success: bool
    records_processed: int = 0
    records_rejected: int = 0
    points_written: int = 0
    points_unchanged: int = 0
    errors: list[str] = Field(default_factory=list)
    last_sync_at: datetime
    # Why the provider stopped this sync early (a spent quota), keeping what was read: the
    # connection backs off. Records that failed validation are not a reason (see errors).
    stopped_by: str | None = None
    # Seconds per phase (say "landing", "metrics"), for run metadata and benchmarks.
    timings: dict[str, float] = Field(default_factory=dict)
    # What the engine found besides the counts (say, what a reconcile compared), for the
    # run's metadata: numbers, text, or JSON-able lists and mappings.
    details: dict[str, Any] = Field(default_factory=dict)
