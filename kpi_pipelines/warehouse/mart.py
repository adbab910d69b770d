"""The daily KPI mart, in pandas: one row per day, one column per metric, every provider.

kpi_data already holds manual overrides (an override replaces the key's value until the
source's next sync writes it), so the mart and `read_kpis` read it as it stands. Only the
totals are read (points without a breakdown); a metric that two providers both report is
named `<provider>.<metric>` in each, every other one by its metric alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

import msgspec
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from kpi_pipelines.warehouse.database import Warehouse

_TOTALS = """
SELECT source, metric, ("timestamp" AT TIME ZONE 'UTC')::date AS day, value
FROM kpi_data
WHERE dimensions_key = ''
  AND (CAST(:metrics AS text[]) IS NULL OR metric = ANY(CAST(:metrics AS text[])))
  AND (CAST(:start AS date) IS NULL OR "timestamp" >= CAST(:start AS date))
  AND (CAST(:end AS date) IS NULL OR "timestamp" < CAST(:end AS date) + 1)
ORDER BY day, source, metric, "timestamp"
"""


def daily_frame(
    db: Connection,
    *,
    metrics: Sequence[str] | None = None,
    start: date | None = None,
    end: date | None = None,
) -> pd.DataFrame:
    """The tenant transaction's workspace as a DataFrame: a `day` index (dates), a column
    per metric (floats, NaN where a day has no value), from `start` to `end` inclusive.
    A day with several points of a metric (hourly ones) keeps the last."""
    rows = db.execute(
        sa.text(_TOTALS),
        {"metrics": list(metrics) if metrics else None, "start": start, "end": end},
    ).all()
    long = pd.DataFrame(rows, columns=["source", "metric", "day", "value"])
    if long.empty:
        return pd.DataFrame(index=pd.Index([], name="day", dtype="object"), dtype="float64")
    sources = long.groupby("metric")["source"].nunique()
    shared = set(sources[sources > 1].index)
    long["column"] = [
        f"{source}.{metric}" if metric in shared else metric
        for source, metric in zip(long["source"], long["metric"], strict=True)
    ]
    wide = long.pivot_table(index="day", columns="column", values="value", aggfunc="last")
    wide.columns.name = None
    wide = wide.sort_index().astype("float64")
    # which provider each column comes from (missing_provider_days reads it)
    wide.attrs["sources"] = dict(zip(long["column"], long["source"], strict=True))
    return wide


def read_kpis(
    workspace: str,
    metrics: Sequence[str] | None = None,
    start: date | None = None,
    end: date | None = None,
    *,
    warehouse: Warehouse | None = None,
) -> pd.DataFrame:
    """A workspace's daily KPIs for a notebook: `day` index, one column per metric.

        from kpi_pipelines import read_kpis
        df = read_kpis("acme", metrics=["mrr", "sessions"], start=date(2026, 1, 1))

    Reads the warehouse of KPI_DATABASE_URL (or the embedded server) unless given one."""
    warehouse = warehouse or Warehouse.connect().ensure_ready()
    with warehouse.tenant(workspace, actor="read_kpis") as db:
        return daily_frame(db, metrics=metrics, start=start, end=end)


def write_mart(db: Connection, frame: pd.DataFrame) -> int:
    """Replace the tenant transaction's workspace's mart rows with `frame`'s; returns rows."""
    days, metrics = [], []
    for day, values in frame.iterrows():
        days.append(day)
        metrics.append(
            msgspec.json.encode({k: float(v) for k, v in values.items() if pd.notna(v)}).decode()
        )
    return int(
        db.execute(
            sa.text("SELECT kpi.replace_mart(CAST(:days AS date[]), CAST(:metrics AS jsonb[]))"),
            {"days": days, "metrics": metrics},
        ).scalar_one()
    )


@dataclass(frozen=True)
class Drop:
    metric: str
    day: date
    before: float
    after: float

    @property
    def share(self) -> float:
        return (self.before - self.after) / self.before


def sharp_drops(frame: pd.DataFrame, share: float, last: date | None = None) -> list[Drop]:
    """Metrics whose latest day (up to `last`, the last whole day: a day still going on has
    only its first hours, which is no fall) is lower than the day before by more than
    `share` of it (only positive values before: a rate at 0 cannot drop)."""
    drops = []
    for metric in frame.columns:
        series = frame[metric].dropna()
        if last is not None:
            series = series[series.index <= last]
        if len(series) < 2:
            continue
        before, after = float(series.iloc[-2]), float(series.iloc[-1])
        if before > 0 and (before - after) / before > share:
            drops.append(Drop(metric, series.index[-1], before, after))
    return drops


def missing_provider_days(
    frame: pd.DataFrame, providers: Iterable[str], last: date
) -> dict[str, list[str]]:
    """Per provider, the days without any of its metrics between its first day and `last`
    (a provider that stopped syncing, or skipped days)."""
    sources: dict[str, str] = frame.attrs.get("sources", {})
    out = {}
    for provider in providers:
        columns = [c for c, source in sources.items() if source == provider]
        if not columns:
            continue
        present = frame[columns].dropna(how="all")
        if present.empty:
            continue
        expected = pd.date_range(present.index.min(), last, freq="D").date
        gaps = sorted(set(expected) - set(present.index))
        if gaps:
            out[provider] = [d.isoformat() for d in gaps]
    return out


__all__ = [
    "Drop",
    "daily_frame",
    "missing_provider_days",
    "read_kpis",
    "sharp_drops",
    "write_mart",
]
