"""How the KPI mart scales with a workspace's metric names: time, peak memory and metadata
size, against reading the same rows from PostgreSQL.

For each shape, N metrics x D days (default 1k, 10k and 30k metrics over 2 days, and a
normal-shaped workspace of 60 metrics over two years, with and without 10 breakdowns per
metric and day), in a fresh temporary KPI_HOME:

1. a child process starts the embedded PostgreSQL, makes a workspace (UTC) and writes its
   N x D daily totals through the write path (two scheduled providers, the metrics split
   between them; the days end at yesterday; every tenth metric falls by 60% on the last
   day, so the no_sharp_drops check, told to watch every metric, has drops to report), and
   with N x D x B a breakdown of each total by B channels;
2. another child process restarts the server and measures the baseline: the same rows
   read from PostgreSQL into a long DataFrame (a tenant transaction, `SELECT source,
   metric, timestamp, dimensions, value`, `pd.DataFrame(rows)`), the least any mart must
   do; best of 3;
3. a third one (so that its peak memory is the mart's, not the load's or the baseline's)
   measures:
   - the real `kpi_mart` asset materialized for the workspace in process (with its two
     checks), as the schedule's run does, on a Dagster instance of its own: the run's time,
     the step's time (from the event log: the mart and its checks, without the run's own
     start-up), the process's peak RSS and its RSS before the run, and the size of what the
     run put into Dagster's metadata (serialized, the materialization and both checks).

Only ratios within one run are meaningful (the machine is shared). Nothing is asserted on
time; the script exits 1 if the mart is not what it should be (D rows, N metrics on the
last day, every tenth metric reported as a drop, N x D x B breakdown values). The last line
printed is one JSON object with every figure.

    python benchmarks/bench_kpi_mart.py                           # 1k, 10k, 30k x 2 days + normal
    python benchmarks/bench_kpi_mart.py --shapes 1000x2 60x730x10 # N metrics x D days [x B]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

WORKSPACE = "bench-mart"
PROVIDERS = ("stripe", "google_analytics")  # both scheduled: the missing-days check reads them
BATCH = 5_000
DEFAULT_SHAPES = ["1000x2", "10000x2", "30000x2", "60x730", "60x730x10"]


def parse_shape(shape: str) -> tuple[int, int, int]:
    metrics, days, *breakdowns = (int(n) for n in shape.split("x"))
    return metrics, days, (breakdowns or [0])[0]


def falls(metric: int) -> bool:
    return metric % 10 == 0


def load(metrics: int, days: int, breakdowns: int) -> None:
    """The workspace and its N x D totals (and N x D x B breakdowns), through the write
    path, in batches."""
    from kpi_pipelines.models import KPIData, day_timestamp
    from kpi_pipelines.warehouse.control import Workspace, add_workspace
    from kpi_pipelines.warehouse.database import Warehouse
    from kpi_pipelines.warehouse.writer import write_kpis

    warehouse = Warehouse.connect().ensure_ready()
    add_workspace(warehouse, Workspace(id=WORKSPACE, name="mart benchmark", timezone="UTC"))
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    first = yesterday - timedelta(days=days - 1)
    points = []
    for metric in range(metrics):
        for n in range(days):
            value = 100.0 + metric % 97 + n
            if n == days - 1 and falls(metric):
                value *= 0.4
            points.append(
                KPIData(
                    value=value,
                    timestamp=day_timestamp(first + timedelta(days=n)),
                    source=PROVIDERS[metric % 2],
                    workspace_id=WORKSPACE,
                    metric=f"bench_metric_{metric:06d}",
                )
            )
            points += [
                KPIData(
                    value=value / (channel + 2),
                    timestamp=day_timestamp(first + timedelta(days=n)),
                    source=PROVIDERS[metric % 2],
                    workspace_id=WORKSPACE,
                    metric=f"bench_metric_{metric:06d}",
                    dimensions={"channel": f"channel_{channel:02d}"},
                )
                for channel in range(breakdowns)
            ]
    fetched_at = datetime.now(UTC)
    for start in range(0, len(points), BATCH):
        with warehouse.tenant(WORKSPACE, actor="bench:load") as db:
            write_kpis(db, points[start : start + BATCH], fetched_at=fetched_at)
    warehouse.dispose()


def best_of(repeats: int, run) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return best, result


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def baseline() -> dict:
    import pandas as pd
    import sqlalchemy as sa

    from kpi_pipelines.warehouse.database import Warehouse

    warehouse = Warehouse.connect().ensure_ready()

    def read_long() -> pd.DataFrame:
        with warehouse.tenant(WORKSPACE, actor="bench:baseline") as db:
            rows = db.execute(
                sa.text('SELECT source, metric, "timestamp", dimensions, value FROM kpi_data')
            ).all()
        return pd.DataFrame(rows, columns=["source", "metric", "timestamp", "dimensions", "value"])

    baseline_s, long = best_of(3, read_long)
    warehouse.dispose()
    return {"points": len(long), "baseline_s": baseline_s}  # type: ignore[arg-type]


def measure(metrics: int, days: int, breakdowns: int, baseline_s: float) -> dict:
    import dagster as dg
    import sqlalchemy as sa

    from kpi_pipelines import demo
    from kpi_pipelines.warehouse.database import Warehouse

    warehouse = Warehouse.connect().ensure_ready()
    rss_before = rss_mb()
    with dg.instance_for_test() as instance:
        started = time.perf_counter()
        result = demo.materialize_mart(instance, WORKSPACE, {"watch": ["*"]})
        run_s = time.perf_counter() - started
        stamps = {
            entry.dagster_event.event_type_value: entry.timestamp
            for entry in instance.all_logs(result.run_id)
            if entry.dagster_event is not None
        }
    step_s = stamps["STEP_SUCCESS"] - stamps["STEP_START"] if result.success else run_s
    peak = rss_mb()

    [materialization] = result.asset_materializations_for_node("kpi_mart")
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    metadata_bytes = len(dg.serialize_value(materialization.metadata)) + sum(
        len(dg.serialize_value(check.metadata)) for check in checks.values()
    )
    drops = checks["no_sharp_drops"].metadata
    # the code before the bound lists every drop and has no count
    drop_count = drops["drop_count"].value if "drop_count" in drops else len(drops["drops"].value)
    with warehouse.tenant(WORKSPACE, actor="bench:check") as db:
        mart_rows, last_day_metrics = db.execute(
            sa.text(
                "SELECT (SELECT count(*) FROM kpi_mart),"
                " (SELECT count(*) FROM kpi_mart, jsonb_object_keys(metrics)"
                "  WHERE day = (SELECT max(day) FROM kpi_mart))"
            )
        ).one()
    warehouse.dispose()
    expected_drops = sum(1 for m in range(metrics) if falls(m)) if days > 1 else 0
    summary = {k: v.value for k, v in materialization.metadata.items()}
    return {
        "metrics": metrics,
        "days": days,
        "breakdowns": breakdowns,
        "baseline_s": round(baseline_s, 3),
        "run_s": round(run_s, 2),
        "step_s": round(step_s, 2),
        "step_x_baseline": round(step_s / baseline_s, 1),
        "peak_rss_mb": round(peak, 0),
        "rss_before_run_mb": round(rss_before, 0),
        "run_added_mb": round(peak - rss_before, 0),
        "metadata_kb": round(metadata_bytes / 1024, 1),
        "drops": drop_count,
        "ok": bool(
            result.success
            and mart_rows == days
            and last_day_metrics == metrics
            and drop_count == expected_drops
            and summary["breakdown_values"] == metrics * days * breakdowns
        ),
    }


def child(role: str, metrics: int, days: int, breakdowns: int, *extra: str) -> dict | None:
    out = subprocess.run(
        [sys.executable, __file__, f"--{role}", f"{metrics}x{days}x{breakdowns}", *extra],
        capture_output=True,
        text=True,
        env=os.environ,
    )
    if out.returncode:
        sys.stderr.write(out.stderr[-4000:])
        raise SystemExit(f"the {role} child for {metrics}x{days}x{breakdowns} failed")
    return json.loads(out.stdout.strip().splitlines()[-1]) if role != "load" else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", default=DEFAULT_SHAPES, help="N_METRICSxD_DAYS")
    parser.add_argument("--load", help=argparse.SUPPRESS)
    parser.add_argument("--baseline", help=argparse.SUPPRESS)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("baseline_s", nargs="?", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        load(*parse_shape(args.load))
        return 0
    if args.baseline:
        print(json.dumps(baseline()), flush=True)
        return 0
    if args.measure:
        print(json.dumps(measure(*parse_shape(args.measure), args.baseline_s)), flush=True)
        return 0

    results = []
    for shape in args.shapes:
        metrics, days, breakdowns = parse_shape(shape)
        home = Path(tempfile.mkdtemp(prefix="kpi-bench-mart-"))
        os.environ["KPI_HOME"] = str(home)
        try:
            child("load", metrics, days, breakdowns)
            read = child("baseline", metrics, days, breakdowns)
            assert read is not None
            row = child("measure", metrics, days, breakdowns, str(read["baseline_s"]))
        finally:
            shutil.rmtree(home, ignore_errors=True)  # each child stopped its server on exit
        assert row is not None
        row = {**row, "points": read["points"]}
        print(json.dumps(row), flush=True)
        results.append(row)

    columns = [
        ("metrics", "metrics"),
        ("days", "days"),
        ("breakdowns", "breakdowns"),
        ("points", "points"),
        ("baseline_s", "baseline s"),
        ("run_s", "run s"),
        ("step_s", "step s"),
        ("step_x_baseline", "step x baseline"),
        ("peak_rss_mb", "peak RSS MB"),
        ("run_added_mb", "run added MB"),
        ("metadata_kb", "metadata KB"),
        ("drops", "drops"),
        ("ok", "ok"),
    ]
    print()
    print("  ".join(f"{title:>15}" for _, title in columns))
    for row in results:
        print("  ".join(f"{row[key]!s:>15}" for key, _ in columns))
    ok = all(row["ok"] for row in results)
    if not ok:
        print("CHECK FAILED: a mart is not what it should be (see `ok`)", file=sys.stderr)
    print(json.dumps({"benchmark": "kpi_mart", "day": date.today().isoformat(), "shapes": results}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
