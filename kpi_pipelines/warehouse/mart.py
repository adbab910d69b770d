"""The daily KPI mart, in pandas: one row per day, one column per metric, every provider;
and each metric's breakdowns beside its total.

kpi_data already holds manual overrides (an override replaces the key's value until the
source's next sync writes it), so the mart and `read_kpis` read it as it stands. A total (a
point without a breakdown) and each breakdown (a point with dimensions) are points of their
own: a total is never the sum of its breakdowns (GA4's users are not additive), and nothing
here adds breakdowns up. A metric that two providers both report is named
`<provider>.<metric>` in each, every other one by its metric alone (totals and breakdowns
each named among their own kind, so a total's name never changes with breakdowns).

Everything here is vectorized over long frames (one row per column and day), never a Python
loop over the columns: a workspace may have tens of thousands of metric names, and pandas
deep-copies a frame's `attrs` into every column it hands out, so a loop over the columns of
a frame carrying one is quadratic. Nothing here sets `attrs`.
"""

from __future__ import annotations

import fnmatch
import re
import warnings
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import islice
from typing import TYPE_CHECKING

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from kpi_pipelines.warehouse.control import get_workspace
from kpi_pipelines.warehouse.database import Warehouse

if TYPE_CHECKING:
    import pandas as pd

_METRICS = "(CAST(:metrics AS text[]) IS NULL OR metric = ANY(CAST(:metrics AS text[])))"
_WINDOW = (
    '(CAST(:start AS date) IS NULL OR "timestamp" >= CAST(:start AS date))'
    ' AND (CAST(:end AS date) IS NULL OR "timestamp" < CAST(:end AS date) + 1)'
)
# A day with several points of a metric (hourly ones) keeps the last.
_TOTALS = f"""
SELECT DISTINCT ON (source, metric, day)
    source, metric, ("timestamp" AT TIME ZONE 'UTC')::date AS day, value
FROM kpi_data
WHERE dimensions_key = '' AND {_METRICS} AND {_WINDOW}
ORDER BY source, metric, day, "timestamp" DESC
"""
# Breakdowns by exactly the dimensions `by` names (all of them when it is NULL), of the
# (source, metric) pairs that `sources` and `pair_metrics` list.
_BREAKDOWNS = f"""
SELECT DISTINCT ON (source, metric, dimensions_key, day)
    source, metric, dimensions_key, dimensions, ("timestamp" AT TIME ZONE 'UTC')::date AS day,
    value
FROM kpi_data
WHERE dimensions_key <> '' AND {_METRICS} AND {_WINDOW}
  AND (CAST(:by AS text[]) IS NULL
       OR (dimensions ?& CAST(:by AS text[])
           AND (SELECT count(*) FROM jsonb_object_keys(dimensions))
               = cardinality(CAST(:by AS text[]))))
  AND (source, metric) IN (SELECT * FROM unnest(CAST(:sources AS text[]),
                                                CAST(:pair_metrics AS text[])))
ORDER BY source, metric, dimensions_key, day, "timestamp" DESC
"""
# Per provider and metric with breakdowns (of any dimensions): how many distinct
# breakdowns, and points.
_BREAKDOWN_SIZES = f"""
SELECT source, metric, count(DISTINCT dimensions_key) AS breakdowns, count(*) AS points
FROM kpi_data
WHERE dimensions_key <> '' AND {_METRICS} AND {_WINDOW}
GROUP BY source, metric
"""
# The mart's breakdowns of the (source, metric) pairs listed, under the names listed: one
# JSON object per day, built by the server ({name: [{"dimensions": ..., "value": ...}, ...]},
# each list in breakdown order), so that no Python object is made per value.
_MART_BREAKDOWNS = """
WITH named AS (
    SELECT * FROM unnest(CAST(:sources AS text[]), CAST(:pair_metrics AS text[]),
                         CAST(:names AS text[])) AS n(source, metric, name)
), latest AS (
    SELECT DISTINCT ON (k.source, k.metric, k.dimensions_key, day)
        n.name, k.dimensions_key, k.dimensions, k.value,
        (k."timestamp" AT TIME ZONE 'UTC')::date AS day
    FROM kpi_data k JOIN named n ON n.source = k.source AND n.metric = k.metric
    WHERE k.dimensions_key <> ''
    ORDER BY k.source, k.metric, k.dimensions_key, day, k."timestamp" DESC
), per_metric AS (
    SELECT day, name, count(*) AS values_count,
           jsonb_agg(jsonb_build_object('dimensions', dimensions, 'value', value)
                     ORDER BY dimensions_key) AS items
    FROM latest
    GROUP BY day, name
)
SELECT day, jsonb_object_agg(name, items)::text AS breakdowns, sum(values_count) AS values_count
FROM per_metric
GROUP BY day
ORDER BY day
"""
# What each asked-for metric has: a total (no names) or breakdowns by which dimensions.
_SHAPES = f"""
SELECT DISTINCT source, metric, ARRAY(SELECT jsonb_object_keys(dimensions) ORDER BY 1) AS names
FROM kpi_data
WHERE metric = ANY(CAST(:metrics AS text[])) AND {_WINDOW}
"""
TOTALS_COLUMNS = ["column", "source", "metric", "day", "value"]
BREAKDOWN_COLUMNS = ["column", "source", "metric", "dimensions_key", "dimensions", "day", "value"]
# The day x metric table is dense: a workspace whose metrics each have a day of their own
# would make it the square of its points (30,000 points: 900 million cells). 20 million
# cells are 160 MB of floats, a dozen years of 4,000 metrics.
MAX_CELLS = 20_000_000
# The mart's breakdowns: a metric with more distinct breakdowns than a chart can show (a
# CSV column of customer ids, say) is left out whole, never cut; and at most this many
# breakdown values in all (a year of 2,700 series), the metrics past it left out whole.
MAX_BREAKDOWNS = 100
MAX_BREAKDOWN_POINTS = 1_000_000
# how many metrics a warning names
NAMED_IN_WARNINGS = 10


class MissingKPIWarning(UserWarning):
    """`read_kpis` was asked for a metric (or a breakdown) that has no point: it names it
    and says what the metric has instead. `warnings.simplefilter("error",
    MissingKPIWarning)` makes it an error."""


class MartTooLarge(ValueError):
    """The day x metric table would have more than MAX_CELLS cells."""


def _named(points: pd.DataFrame) -> pd.Series:
    """Each point's column name: its metric, or `<provider>.<metric>` when more than one
    provider has points of that metric in `points`."""
    providers = points.groupby("metric")["source"].transform("nunique")
    return points["metric"].where(providers == 1, points["source"] + "." + points["metric"])


def daily_totals(
    db: Connection,
    *,
    metrics: Sequence[str] | None = None,
    start: date | None = None,
    end: date | None = None,
) -> pd.DataFrame:
    """The tenant transaction's workspace's daily totals, long: one row per column and day
    (`column`: the mart's column name, `source`: its provider, `metric`, `day`: a date,
    `value`: a float), from `start` to `end` inclusive."""
    import pandas as pd  # lazily: only the mart and read_kpis need it

    rows = db.execute(
        sa.text(_TOTALS),
        {"metrics": list(metrics) if metrics else None, "start": start, "end": end},
    ).all()
    totals = pd.DataFrame(rows, columns=["source", "metric", "day", "value"])
    totals["column"] = _named(totals)
    return totals[TOTALS_COLUMNS].astype({"value": "float64"})


def breakdown_sizes(
    db: Connection,
    *,
    metrics: Sequence[str] | None = None,
    start: date | None = None,
    end: date | None = None,
) -> pd.DataFrame:
    """Per provider and metric with breakdowns (by any dimensions): `column` (its name,
    among every metric with breakdowns: a metric two providers break down is
    `<provider>.<metric>`), `source`, `metric`, `breakdowns` (distinct) and `points`, in
    column order."""
    import pandas as pd  # lazily: only the mart and read_kpis need it

    sizes = pd.DataFrame(
        db.execute(
            sa.text(_BREAKDOWN_SIZES),
            {"metrics": list(metrics) if metrics else None, "start": start, "end": end},
        ).all(),
        columns=["source", "metric", "breakdowns", "points"],
    )
    sizes["column"] = _named(sizes)
    return sizes.sort_values("column", kind="stable")


def daily_breakdowns(
    db: Connection,
    *,
    metrics: Sequence[str] | None = None,
    start: date | None = None,
    end: date | None = None,
    by: Sequence[str] | None = None,
    sizes: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The workspace's daily breakdowns, long: one row per column, breakdown and day
    (`column` named as in `breakdown_sizes`, `source`, `metric`, `dimensions_key` (the
    breakdown's key), `dimensions` (a dict), `day`, `value`); only breakdowns by exactly the
    dimensions `by` names when given; only the metrics of `sizes` (`breakdown_sizes`, read
    first when not given) and named as it names them."""
    import pandas as pd  # lazily: only the mart and read_kpis need it

    if sizes is None:
        sizes = breakdown_sizes(db, metrics=metrics, start=start, end=end)
    rows = db.execute(
        sa.text(_BREAKDOWNS),
        {
            "metrics": list(metrics) if metrics else None,
            "start": start,
            "end": end,
            "by": list(by) if by else None,
            "sources": list(sizes["source"]),
            "pair_metrics": list(sizes["metric"]),
        },
    ).all()
    columns = ["source", "metric", "dimensions_key", "dimensions", "day", "value"]
    breakdowns = pd.DataFrame(rows, columns=columns)
    breakdowns = breakdowns.merge(
        sizes[["source", "metric", "column"]], on=["source", "metric"], how="left"
    )
    return breakdowns[BREAKDOWN_COLUMNS].astype({"value": "float64"})


def wide_frame(totals: pd.DataFrame) -> pd.DataFrame:
    """`daily_totals` (or any long frame of `column`, `day`, `value`) as the mart's shape:
    a `day` index (dates, in order), a column per metric (floats, NaN where a day has no
    value), columns in name order; MartTooLarge if it would have more than MAX_CELLS cells."""
    import pandas as pd  # lazily: only the mart and read_kpis need it

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
    """The tenant transaction's workspace's totals as a DataFrame: a `day` index (dates), a
    column per metric (floats, NaN where a day has no value), from `start` to `end`
    inclusive. A day with several points of a metric (hourly ones) keeps the last."""
    return wide_frame(daily_totals(db, metrics=metrics, start=start, end=end))


def breakdown_labels(breakdowns: pd.DataFrame, by: Sequence[str]) -> pd.Series:
    """`signups[Team=growth]`: each breakdown's column with its values of `by`, in order."""
    labels = breakdowns["column"] + "["
    for n, name in enumerate(by):
        values = breakdowns["dimensions"].map(lambda dims, name=name: dims[name])
        labels = labels + ("" if n == 0 else ", ") + f"{name}=" + values
    return labels + "]"


def _dimension_names(by: str | Sequence[str] | None) -> tuple[str, ...]:
    if by is None:
        return ()
    names = (by,) if isinstance(by, str) else tuple(by)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"by names the breakdown's dimensions (say by='Team'), got {by!r}")
    if len(set(names)) < len(names):
        raise ValueError(f"by names a dimension twice: {by!r}")
    return names


def read_kpis(
    workspace: str,
    metrics: Sequence[str] | None = None,
    start: date | None = None,
    end: date | None = None,
    *,
    by: str | Sequence[str] | None = None,
    warehouse: Warehouse | None = None,
) -> pd.DataFrame:
    """A workspace's daily KPIs for a notebook: a `day` index (dates, in order), one
    column of floats per metric (NaN where a day has none), from `start` to `end`
    inclusive; a metric two providers report is `<provider>.<metric>`. A day with several
    points of a metric (hourly ones) keeps the last.

        from kpi_pipelines import read_kpis
        df = read_kpis("acme", metrics=["mrr", "sessions"], start=date(2026, 1, 1))
        teams = read_kpis("acme", metrics=["signups"], by="Team")

    Without `by`, the columns are totals only (points without a breakdown). With
    `by="Team"` (or several dimensions, `by=["Team", "Region"]`) each metric's total keeps
    its column, when it has one, and each of its breakdowns by exactly those dimensions gets
    a column of its own beside it, `signups[Team=growth]` (`signups[Region=eu, Team=growth]`
    in the order of `by`): the total is the provider's own figure, never the sum of its
    breakdowns, and a breakdown by other dimensions is not read.

    A metric asked for that has no point (or no breakdown by `by`) gets no column and a
    MissingKPIWarning naming it and saying what it has instead ("signups has no total, only
    breakdowns by Team (csv_upload): read_kpis(..., by='Team') reads them"); an empty
    result gets one too. An unknown workspace raises UnknownWorkspace; a table over
    MAX_CELLS cells raises MartTooLarge (ask for fewer metrics or days).

    Reads the warehouse of KPI_DATABASE_URL (or the embedded server) unless given one."""
    import pandas as pd  # lazily: only the mart and read_kpis need it

    names = _dimension_names(by)
    warehouse = warehouse or Warehouse.connect().ensure_ready()
    with warehouse.tenant(workspace, actor="read_kpis") as db:
        get_workspace(db, workspace)
        totals = daily_totals(db, metrics=metrics, start=start, end=end)
        long = totals[["column", "day", "value"]]
        found = set(totals["metric"])
        if names:
            breakdowns = daily_breakdowns(db, metrics=metrics, start=start, end=end, by=names)
            labelled = breakdowns.assign(column=breakdown_labels(breakdowns, names))
            long = pd.concat([long, labelled[["column", "day", "value"]]], ignore_index=True)
            found = set(breakdowns["metric"])
        frame = wide_frame(long)
        missing = [m for m in dict.fromkeys(metrics or ()) if m not in found]
        problem = None
        if missing:
            problem = _missing_note(db, missing, names, start, end)
        elif frame.empty:
            problem = "no point" if not names else f"no breakdown by {' and '.join(names)}"
        if problem:
            window = _window_words(start, end)
            warnings.warn(
                f"read_kpis({workspace!r}){window}: {problem}",
                MissingKPIWarning,
                stacklevel=2,
            )
    return frame


def _window_words(start: date | None, end: date | None) -> str:
    if start and end:
        return f" from {start} to {end}"
    if start:
        return f" from {start}"
    return f" up to {end}" if end else ""


def _missing_note(
    db: Connection,
    missing: Sequence[str],
    by: Sequence[str],
    start: date | None,
    end: date | None,
) -> str:
    """What each missing metric has instead: nothing, a total, breakdowns by what."""
    named = list(missing[:NAMED_IN_WARNINGS])
    rows = db.execute(sa.text(_SHAPES), {"metrics": named, "start": start, "end": end}).all()
    shapes: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for source, metric, dimension_names in sorted(rows):
        shapes.setdefault(metric, []).append((source, tuple(dimension_names)))
    notes = []
    for metric in named:
        has = shapes.get(metric, [])
        described = ", ".join(
            f"breakdowns by {' and '.join(dims)} ({source})" if dims else f"a total ({source})"
            for source, dims in has
        )
        if not has:
            notes.append(f"{metric} has no point")
        elif by:
            notes.append(f"{metric} has no breakdown by {' and '.join(by)}, only {described}")
        else:
            dims = next(dims for _, dims in has if dims)  # it has no total: a breakdown
            hint = repr(dims[0]) if len(dims) == 1 else repr(list(dims))
            notes.append(
                f"{metric} has no total, only {described}: read_kpis(..., by={hint}) reads them"
            )
    if len(missing) > len(named):
        notes.append(f"and {len(missing) - len(named)} more metric(s) missing")
    return "; ".join(notes)


@dataclass(frozen=True)
class MartBreakdowns:
    """The mart's breakdowns: one JSON object per day ({column: [{"dimensions": {...},
    "value": v}, ...]}, as text), how many columns and values they hold, and the columns
    left out whole (with why)."""

    by_day: dict[date, str]
    columns: int
    points: int
    left_out: dict[str, str]


def mart_breakdowns(db: Connection) -> MartBreakdowns:
    """Every breakdown of the workspace, by day, bounded: a metric with over MAX_BREAKDOWNS
    distinct breakdowns is left out, and so are the metrics (in name order) past
    MAX_BREAKDOWN_POINTS values in all; counted before their points are read, so a large
    one costs nothing."""
    sizes = breakdown_sizes(db)
    too_many = sizes["breakdowns"] > MAX_BREAKDOWNS
    fits = sizes["points"].where(~too_many, 0).cumsum() <= MAX_BREAKDOWN_POINTS
    kept = sizes[~too_many & fits]
    left_out = {
        **{
            column: f"{count:,} breakdowns, over {MAX_BREAKDOWNS}"
            for column, count in zip(
                sizes["column"][too_many], sizes["breakdowns"][too_many], strict=True
            )
        },
        **{
            column: f"past {MAX_BREAKDOWN_POINTS:,} breakdown values in all"
            for column in sizes["column"][~too_many & ~fits]
        },
    }
    if kept.empty:
        return MartBreakdowns({}, 0, 0, left_out)
    rows = db.execute(
        sa.text(_MART_BREAKDOWNS),
        {
            "sources": list(kept["source"]),
            "pair_metrics": list(kept["metric"]),
            "names": list(kept["column"]),
        },
    ).all()
    by_day = {day: breakdowns for day, breakdowns, _ in rows}
    return MartBreakdowns(by_day, len(kept), int(sum(n for _, _, n in rows)), left_out)


def write_mart(
    db: Connection, frame: pd.DataFrame, breakdowns: MartBreakdowns | None = None
) -> int:
    """Replace the tenant transaction's workspace's mart rows with `frame`'s totals and
    `breakdowns` (a row for every day either has); returns rows."""
    import pandas as pd  # lazily: only the mart and read_kpis need it

    by_day = breakdowns.by_day if breakdowns else {}
    totals = {
        day: msgspec.json.encode({k: float(v) for k, v in values.items() if pd.notna(v)}).decode()
        for day, values in frame.iterrows()
    }
    days = sorted(set(totals) | set(by_day))
    return int(
        db.execute(
            sa.text(
                "SELECT kpi.replace_mart(CAST(:days AS date[]), CAST(:metrics AS jsonb[]),"
                " CAST(:breakdowns AS jsonb[]))"
            ),
            {
                "days": days,
                "metrics": [totals.get(day, "{}") for day in days],
                "breakdowns": [by_day.get(day, "{}") for day in days],
            },
        ).scalar_one()
    )


def watched_columns(
    totals: pd.DataFrame, levels: Collection[tuple[str, str]], patterns: Sequence[str] = ()
) -> set[str]:
    """The columns of `daily_totals` the sharp-drop check watches: the (source, metric)
    `levels` the providers declare, and the columns any of `patterns` (fnmatch: `signups`,
    `csv_upload.*`, `*`) matches."""
    import pandas as pd  # lazily: only the mart and read_kpis need it

    columns = totals[["column", "source", "metric"]].drop_duplicates("column")
    if columns.empty:
        return set()
    declared = pd.Series(
        [(s, m) in levels for s, m in zip(columns["source"], columns["metric"], strict=True)],
        index=columns.index,
        dtype=bool,
    )
    if patterns:
        combined = "|".join(f"(?:{fnmatch.translate(p)})" for p in patterns)
        declared |= columns["column"].str.fullmatch(re.compile(combined))
    return set(columns["column"][declared])


@dataclass(frozen=True)
class Drop:
    metric: str
    day: date
    before: float
    after: float

    @property
    def share(self) -> float:
        return (self.before - self.after) / self.before


def sharp_drops(
    totals: pd.DataFrame,
    share: float,
    last: date | None = None,
    columns: Collection[str] | None = None,
) -> list[Drop]:
    """Metrics (columns of `daily_totals`; only `columns` when given) whose latest day (up
    to `last`, the last whole day: a day still going on has only its first hours, which is
    no fall) is lower than the calendar day before by more than `share` of it (only
    positive values before: a rate at 0 cannot drop; a metric with no value the day before
    is not compared, its gap is no fall); the steepest fall first."""
    points = totals if last is None else totals[totals["day"] <= last]
    if columns is not None:
        points = points[points["column"].isin(columns)]
    if points.empty:
        return []
    latest = points.sort_values(["column", "day"]).drop_duplicates("column", keep="last")
    previous = points[["column", "day", "value"]].assign(day=points["day"] + timedelta(days=1))
    paired = latest.merge(previous, on=["column", "day"], suffixes=("", "_before"))
    paired = paired[paired["value_before"] > 0]
    fell_by = (paired["value_before"] - paired["value"]) / paired["value_before"]
    fallen = paired.assign(fell_by=fell_by)[fell_by > share]
    fallen = fallen.sort_values(["fell_by", "column"], ascending=[False, True])
    return [
        Drop(column, day, before, after)
        for column, day, before, after in zip(
            fallen["column"], fallen["day"], fallen["value_before"], fallen["value"], strict=True
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
    "MartBreakdowns",
    "MartTooLarge",
    "MissingDays",
    "MissingKPIWarning",
    "breakdown_labels",
    "breakdown_sizes",
    "daily_breakdowns",
    "daily_frame",
    "daily_totals",
    "mart_breakdowns",
    "missing_provider_days",
    "read_kpis",
    "sharp_drops",
    "watched_columns",
    "wide_frame",
    "write_mart",
]
