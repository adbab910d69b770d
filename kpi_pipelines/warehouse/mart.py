"""The daily KPI mart, in pandas: one row per day, one column per metric, every provider.

kpi_data already holds manual overrides (an override replaces the key's value until the
source's next sync writes it), so the mart and `read_kpis` read it as it stands. Only the
totals are read (points without a breakdown); a metric that two providers both report is
named `<provider>.<metric>` in each, every other one by its metric alone.

Everything here is vectorized over the long frame of daily totals (one row per column and
day), never a Python loop over the columns: a workspace may have tens of thousands of metric
names, and pandas deep-copies a frame's `attrs` into every column it hands out, so a loop
over the columns of a frame carrying one is quadratic. Nothing here sets `attrs`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import islice

import msgspec
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from kpi_pipelines.warehouse.database import Warehouse

# A day with several points of a metric (hourly ones) keeps the last.
_TOTALS = """
SELECT DISTINCT ON (source, metric, day)
    source, metric, ("timestamp" AT TIME ZONE 'UTC')::date AS day, value
FROM kpi_data
WHERE dimensions_key = ''
  AND (CAST(:metrics AS text[]) IS NULL OR metric = ANY(CAST(:metrics AS text[])))
  AND (CAST(:start AS date) IS NULL OR "timestamp" >= CAST(:start AS date))
  AND (CAST(:end AS date) IS NULL OR "timestamp" < CAST(:end AS date) + 1)
ORDER BY source, metric, day, "timestamp" DESC
"""
TOTALS_COLUMNS = ["column", "source", "day", "value"]
# The day x metric table is dense: a workspace whose metrics each have a day of their own
# would make it the square of its points (30,000 points: 900 million cells). 20 million
# cells are 160 MB of floats, a dozen years of 4,000 metrics.
MAX_CELLS = 20_000_000


class MartTooLarge(ValueError):
    """The day x metric table would have more than MAX_CELLS cells."""


def daily_totals(
    db: Connection,
    *,
    metrics: Sequence[str] | None = None,
    start: date | None = None,
    end: date | None = None,
) -> pd.DataFrame:
    """The tenant transaction's workspace's daily totals, long: one row per column and day
    (`column`: the mart's column name, `source`: its provider, `day`: a date, `value`: a
    float), from `start` to `end` inclusive."""
    rows = db.execute(
        sa.text(_TOTALS),
        {"metrics": list(metrics) if metrics else None, "start": start, "end": end},
    ).all()
    totals = pd.DataFrame(rows, columns=["source", "metric", "day", "value"])
    providers = totals.groupby("metric")["source"].transform("nunique")
    totals["column"] = totals["metric"].where(
        providers == 1, totals["source"] + "." + totals["metric"]
    )
    return totals[TOTALS_COLUMNS].astype({"value": "float64"})


def wide_frame(totals: pd.DataFrame) -> pd.DataFrame:
    """`daily_totals` as the mart's shape: a `day` index (dates, in order), a column per
    metric (floats, NaN where a day has no value), columns in name order; MartTooLarge if
    it would have more than MAX_CELLS cells."""
    if totals.empty:
        return pd.DataFrame(index=pd.Index([], name="day", dtype="object"), dtype="float64")
    days, columns = totals["day"].nunique(), totals["column"].nunique()
    if days * columns > MAX_CELLS:
        raise MartTooLarge(
            f"the day x metric table would be {days:,} days by {columns:,} metrics,"
            f" {days * columns:,} cells, over the limit of {MAX_CELLS:,}: read_kpis reads"
            " less with metrics, start and end; the kpi_mart asset keeps the last mart built"
        )
    wide = totals.pivot(index="day", columns="column", values="value")
    wide.columns.name = None
    return wide.astype("float64")


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
    return wide_frame(daily_totals(db, metrics=metrics, start=start, end=end))


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


def sharp_drops(totals: pd.DataFrame, share: float, last: date | None = None) -> list[Drop]:
    """Metrics (columns of `daily_totals`) whose latest day (up to `last`, the last whole
    day: a day still going on has only its first hours, which is no fall) is lower than the
    day before by more than `share` of it (only positive values before: a rate at 0 cannot
    drop); the steepest fall first."""
    points = totals if last is None else totals[totals["day"] <= last]
    points = points.sort_values(["column", "day"])
    before = points.groupby("column", sort=False)["value"].shift()
    latest = points.assign(before=before).drop_duplicates("column", keep="last")
    latest = latest[latest["before"] > 0]
    fell_by = (latest["before"] - latest["value"]) / latest["before"]
    fallen = latest.assign(fell_by=fell_by)[fell_by > share]
    fallen = fallen.sort_values(["fell_by", "column"], ascending=[False, True])
    return [
        Drop(column, day, before, after)
        for column, day, before, after in zip(
            fallen["column"], fallen["day"], fallen["before"], fallen["value"], strict=True
        )
    ]


@dataclass(frozen=True)
class MissingDays:
    """Days a provider has no value on, between its first day and the last day checked."""

    count: int
    first: list[date]  # the earliest of them, at most as many as asked for


def missing_provider_days(
    totals: pd.DataFrame, providers: Iterable[str], last: date, *, listed: int
) -> dict[str, MissingDays]:
    """Per provider, the days without any of its metrics between its first day and `last`
    (a provider that stopped syncing, or skipped days): how many, and the earliest `listed`
    (counted without listing them all: a provider's first day may be decades back)."""
    days_of = totals.groupby("source")["day"].unique()
    out: dict[str, MissingDays] = {}
    for provider in providers:  # the project's providers: a few, whatever the data
        if provider not in days_of.index:
            continue
        present = sorted(days_of[provider])
        covered = [day for day in present if day <= last]
        count = (last - present[0]).days + 1 - len(covered) if present[0] <= last else 0
        if not count:
            continue
        out[provider] = MissingDays(count, list(islice(_days_between(covered, last), listed)))
    return out


def _days_between(present: list[date], last: date) -> Iterator[date]:
    """The days missing from `present` (in order) between its first day and `last`."""
    for day, following in zip(present, [*present[1:], last + timedelta(days=1)], strict=True):
        missing = day + timedelta(days=1)
        while missing < following:
            yield missing
            missing += timedelta(days=1)


__all__ = [
    "Drop",
    "MartTooLarge",
    "MissingDays",
    "daily_frame",
    "daily_totals",
    "missing_provider_days",
    "read_kpis",
    "sharp_drops",
    "wide_frame",
    "write_mart",
]
