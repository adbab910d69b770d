"""Stripe sync over loopback HTTP from the sandbox, against a plain paging baseline.

For each size (default 100k and 1M objects) a fresh child process:
1. starts the Stripe sandbox in its own process (`python -m kpi_pipelines.sandbox.stripe
   serve --objects N`), so it never competes with the pipeline for the GIL;
2. baseline: pages through the same endpoints with the same parameters using plain httpx
   (keep-alive, each page decoded with `Response.json()`, nothing else) — this also gives
   the sandbox's pages per second, and its CPU time the pages per second it could serve
   with a CPU to itself (its capacity, compared with the pipeline's pace);
3. runs the real Stripe adapter (official SDK requestor, pages split into their objects'
   JSON texts, each validated with pydantic, raw landing through the one write path, then
   every metric in SQL) on a fresh embedded PostgreSQL, reporting the time until the raw
   records are committed and, separately, the metrics time;
4. reports records per second, peak RSS of the pipeline process, and the ratios;
5. reports the CPU-seconds of the sandbox, of this process and of PostgreSQL during
   the baseline, the landing and the metrics, and how busy that kept the machine's CPUs
   (`*_machine_busy`: all their CPU-seconds over CPUs x wall time; near 1.0 the phase was
   bound by the machine, not by waiting, and the sandbox's share is CPU the pipeline did
   not get).

Targets (issue 21, after issue 3's): sync <= 1.1x the baseline; metrics <= 0.4x the sync at
100k and at 1M (linear in the account's size); peak memory at 1M <= 1.2x peak memory at
100k. Nothing is asserted: the figures are printed, with one JSON line per size at the end.

    python benchmarks/bench_stripe_sync.py                    # 100k and 1M (long: tens of minutes)
    python benchmarks/bench_stripe_sync.py --objects 20000    # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

API_KEY = "sk_test_benchmark_key_000000000000"


def streams() -> list[tuple[str, list[tuple[str, str]]]]:
    """The adapter's list requests (its spec's streams), as query parameters: the baseline
    asks for exactly what the pipeline asks for."""
    from kpi_pipelines.integrations.stripe.spec import STREAMS

    out = []
    for stream in STREAMS:
        query: list[tuple[str, str]] = []
        for key, value in stream.params:
            values = value if isinstance(value, tuple) else (value,)
            query += [(f"{key}[]" if isinstance(value, tuple) else key, v) for v in values]
        out.append((stream.path, query))
    return out


def start_sandbox(objects: int, seed: int) -> tuple[subprocess.Popen, str]:
    # A year of simulated business ending now, so the rates and "today" match the clock.
    now = datetime.now(UTC).replace(microsecond=0)
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "kpi_pipelines.sandbox.stripe", "serve"),
            *("--port", "0", "--seed", str(seed), "--objects", str(objects), "--api-key", API_KEY),
            *("--start", (now - timedelta(days=365)).isoformat(), "--now", now.isoformat()),
            # Every customer's simulation stays in memory (about 0.8 GB at 1M objects): with
            # the default cache, paging invoices re-simulates each customer a dozen times and
            # the sandbox, not the pipeline, would be what is measured.
            *("--cache-customers", str(objects)),
        ],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("http://") or "http://" in line:
            return process, line.strip().split()[-1]
    raise RuntimeError("the sandbox did not start")


def baseline(base_url: str) -> dict[str, float]:
    import httpx

    pages = objects = 0
    started = time.perf_counter()
    with httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60
    ) as http:
        for path, params in streams():
            after = None
            while True:
                query = [*params, ("limit", 100), *([("starting_after", after)] if after else [])]
                page = http.get(path, params=query).json()
                pages += 1
                data = page["data"]
                objects += len(data)
                if not page["has_more"] or not data:
                    break
                after = data[-1]["id"]
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "objects": objects,
        "pages": pages,
        "pages_per_second": pages / seconds,
    }


class CpuMeter:
    """CPU-seconds of the sandbox, this process (the client: the baseline loop, then the
    pipeline) and the embedded PostgreSQL, read at marks."""

    def __init__(self, sandbox: psutil.Process) -> None:
        self.sandbox = sandbox
        self.client = psutil.Process()  # the baseline loop, then the pipeline
        self.marks: dict[str, tuple[float, dict[str, float]]] = {}

    def read(self) -> dict[str, float]:
        return {
            "sandbox": _cpu_seconds(self.sandbox),
            "client": _cpu_seconds(self.client),
            "postgres": _postgres_cpu_seconds(),
        }

    def mark(self, name: str) -> None:
        self.marks[name] = (time.perf_counter(), self.read())

    def between(self, first: str, last: str) -> dict[str, float]:
        (began, before), (ended, after) = self.marks[first], self.marks[last]
        used = {group: round(after[group] - before[group], 1) for group in before}
        busy = sum(used.values()) / ((os.cpu_count() or 1) * (ended - began))
        return {**used, "machine_busy": round(busy, 2)}


def _postgres_cpu_seconds() -> float:
    """The embedded server's CPU: the postmaster, the backends it has reaped (its children's
    times) and those still running; 0 on a server this process did not start."""
    from kpi_pipelines.warehouse.embedded import embedded_server

    if os.environ.get("KPI_DATABASE_URL"):
        return 0.0
    pid_file = embedded_server().data_dir / "postmaster.pid"
    try:
        postmaster = psutil.Process(int(pid_file.read_text().split()[0]))
        times = postmaster.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for backend in postmaster.children():
            with contextlib.suppress(psutil.Error):
                total += _cpu_seconds(backend)
        return total
    except (OSError, ValueError, psutil.Error):
        return 0.0


@contextlib.contextmanager
def phases_marked(meter: CpuMeter) -> Iterator[None]:
    """Marks the landing (the full read) and the metrics of the object engine's sync by
    wrapping two of its methods for the run (the engine itself is untouched)."""
    from kpi_pipelines.integrations.shared.engines.objects import ObjectEngine

    relist, sync = ObjectEngine._relist, ObjectEngine.sync

    def marked_relist(self: ObjectEngine, *args: Any, **kwargs: Any) -> Any:
        meter.mark("landing")
        try:
            return relist(self, *args, **kwargs)
        finally:
            meter.mark("metrics")

    def marked_sync(self: ObjectEngine, *args: Any, **kwargs: Any) -> Any:
        try:
            return sync(self, *args, **kwargs)
        finally:
            meter.mark("end")

    ObjectEngine._relist, ObjectEngine.sync = marked_relist, marked_sync  # type: ignore[method-assign]
    try:
        yield
    finally:
        ObjectEngine._relist, ObjectEngine.sync = relist, sync  # type: ignore[method-assign]


def pipeline(base_url: str, meter: CpuMeter) -> dict[str, float]:
    import dagster as dg

    from kpi_pipelines.automation.partitions import register_partition
    from kpi_pipelines.definitions import PROVIDERS
    from kpi_pipelines.integrations.stripe.adapter import StripeAdapter
    from kpi_pipelines.resources import WarehouseResource
    from kpi_pipelines.warehouse.control import Connection, Workspace, add_connection, add_workspace
    from kpi_pipelines.warehouse.database import Warehouse

    os.environ["WS_BENCH__STRIPE_KEY"] = API_KEY
    warehouse = Warehouse.connect().ensure_ready()
    add_workspace(warehouse, Workspace(id="bench", name="bench", reporting_currency="USD"))
    add_connection(
        warehouse,
        Connection(
            workspace_id="bench",
            provider="stripe",
            secret_env={"api_key": "WS_BENCH__STRIPE_KEY"},
        ),
    )
    _import_rates(warehouse)
    with dg.instance_for_test() as instance:
        register_partition(instance, "bench", "stripe")
        started = time.perf_counter()
        with phases_marked(meter):
            result = dg.materialize(
                [PROVIDERS["stripe"].asset],
                instance=instance,
                partition_key="bench",
                resources={
                    "warehouse": WarehouseResource(),
                    "stripe": StripeAdapter(base_url=base_url),
                },
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            )
        total = time.perf_counter() - started
    [event] = result.get_asset_materialization_events()
    md = {k: v.value for k, v in event.materialization.metadata.items()}
    return {
        "records": md["records_processed"],
        "landing_seconds": md["landing_seconds"],
        "metrics_seconds": md["metrics_seconds"],
        "run_seconds": total,
        "points": md["points_written"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _import_rates(warehouse) -> None:  # type: ignore[no-untyped-def]
    from datetime import date

    from kpi_pipelines.sandbox.stripe import fx_rates
    from kpi_pipelines.sandbox.stripe.generator import StripeSandboxConfig
    from kpi_pipelines.warehouse.control import FxRate, import_fx_rates

    config = StripeSandboxConfig()
    end = date.today() + timedelta(days=3)
    rates = fx_rates(0, config.currencies, end - timedelta(days=800), end)
    import_fx_rates(
        warehouse,
        [
            FxRate(base=b.upper(), quote="USD", day=d, rate=r)
            for d, b, q, r in rates
            if q == "usd" and b != "usd"
        ],
    )


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def child(objects: int, seed: int) -> dict[str, float]:
    home = Path(tempfile.mkdtemp(prefix="kpi-bench-"))
    os.environ["KPI_HOME"] = str(home)
    sandbox, base_url = start_sandbox(objects, seed)
    try:
        served_by = psutil.Process(sandbox.pid)
        meter = CpuMeter(served_by)
        meter.mark("baseline")
        base = baseline(base_url)
        meter.mark("baseline end")
        sandbox_cpu = meter.between("baseline", "baseline end")["sandbox"]
        run = pipeline(base_url, meter)
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=60)
    figures = {
        "objects": base["objects"],
        "baseline_seconds": round(base["seconds"], 2),
        "sandbox_pages_per_second": round(base["pages_per_second"], 1),
        # what the sandbox could serve with a CPU to itself, against what the pipeline took
        "sandbox_capacity_pages_per_second": round(base["pages"] / sandbox_cpu, 1),
        "sandbox_ahead_of_pipeline": round(
            base["pages"] / sandbox_cpu / (base["pages"] / run["landing_seconds"]), 2
        ),
        "sync_seconds": round(run["landing_seconds"], 2),
        "sync_vs_baseline": round(run["landing_seconds"] / base["seconds"], 2),
        "records_per_second": round(run["records"] / run["landing_seconds"], 1),
        "metrics_seconds": round(run["metrics_seconds"], 2),
        "metrics_vs_sync": round(run["metrics_seconds"] / run["landing_seconds"], 2),
        "kpi_points": run["points"],
        "peak_rss_mb": round(run["peak_rss_mb"], 1),
    }
    for phase, (first, last) in {
        "baseline": ("baseline", "baseline end"),
        "landing": ("landing", "metrics"),
        "metrics": ("metrics", "end"),
    }.items():
        for group, value in meter.between(first, last).items():
            figures[f"{phase}_{group}" if group == "machine_busy" else f"{phase}_cpu_{group}"] = (
                value
            )
    print(json.dumps(figures), flush=True)
    shutil.rmtree(home, ignore_errors=True)  # the embedded server stops when this process exits
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.objects[0], args.seed)
        return
    results = []
    for objects in args.objects:
        # A process per size: peak memory is per size, not the maximum of all of them.
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                "--objects",
                str(objects),
                "--seed",
                str(args.seed),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    # a figure per line, a size per column
    width = max(map(len, results[0]))
    for figure in results[0]:
        print(f"{figure:<{width}}" + "".join(f"{row[figure]:>14}" for row in results))
    if len(results) > 1:
        print(
            f"peak memory {results[-1]['objects']:,} vs {results[0]['objects']:,} objects:"
            f" {results[-1]['peak_rss_mb'] / results[0]['peak_rss_mb']:.2f}x"
        )
    for row in results:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
