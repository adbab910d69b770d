"""What a run the CLI starts (`kpi-pipelines sync` / `import` / `demo`) costs, against what
it cost before it was its provider job's run.

In a fresh temporary KPI_HOME (the embedded PostgreSQL), one workspace with a csv_upload
connection imports the same small CSV file again and again, alternating:

- baseline: `demo.materialize_provider`, the in-process `materialize` of the provider's
  asset that the CLI used before (an `__ephemeral_asset_job__` run the UI cannot
  re-execute);
- in process: `runs.run_provider` with no daemon serving the run queue, what the CLI does
  now in the quick start or a cron job: the provider's job, executed in this process;
- queued (`--queued`): the same while `kpi-pipelines ui` runs (its daemon serves the queue,
  its code server starts each run in a process of its own), what the CLI does beside a
  running deployment: queue, dequeue, run process, wait.

Each figure is the wall time of one run from the call to its outcome, in this process (the
CLI's own start-up, the same for all, is not included). Only ratios within one run are
meaningful (the machine is shared); nothing is asserted on time. The script exits 1 when a
run fails. The last line printed is one JSON object with every figure.

    python benchmarks/bench_cli_runs.py                 # 10 runs each, in process
    python benchmarks/bench_cli_runs.py --queued        # and through the daemon (+1 min)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

WORKSPACE = "bench-runs"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="runs per way (default 10)")
    parser.add_argument("--queued", action="store_true", help="also through a daemon")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="kpi-bench-runs-"))
    os.environ["KPI_HOME"] = str(home)
    os.environ.pop("DAGSTER_HOME", None)
    try:
        return measure(home, args.runs, args.queued)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def measure(home: Path, runs: int, queued: bool) -> int:
    from kpi_pipelines.automation.partitions import register_partition
    from kpi_pipelines.dagster_instance import open_instance
    from kpi_pipelines.demo import materialize_provider
    from kpi_pipelines.runs import run_provider
    from kpi_pipelines.warehouse.control import (
        Connection,
        Workspace,
        add_connection,
        add_workspace,
    )
    from kpi_pipelines.warehouse.database import Warehouse

    warehouse = Warehouse.connect().ensure_ready()
    instance = open_instance()
    add_workspace(warehouse, Workspace(id=WORKSPACE, name="runs benchmark", timezone="UTC"))
    mapping = {"mapping": {"date_column": "d", "metric": "orders", "value_column": "v"}}
    add_connection(
        warehouse, Connection(workspace_id=WORKSPACE, provider="csv_upload", settings=mapping)
    )
    register_partition(instance, WORKSPACE, "csv_upload")
    csv = home / "orders.csv"
    csv.write_text("d,v\n2026-01-01,4\n2026-01-02,6\n", encoding="utf-8")
    config = {"path": str(csv)}

    def baseline() -> bool:
        result = materialize_provider(
            warehouse, instance, "csv_upload", WORKSPACE, config, log_level="CRITICAL"
        )
        return result.success

    def in_process() -> bool:
        return run_provider(warehouse, instance, "csv_upload", WORKSPACE, config).success

    ways: dict[str, Callable[[], bool]] = {"baseline": baseline, "in process": in_process}
    times: dict[str, list[float]] = {name: [] for name in ways}
    baseline(), in_process()  # warm up: definitions loaded, job resolved
    for _ in range(runs):
        for name, way in ways.items():
            started = time.perf_counter()
            if not way():
                print(f"a {name} run failed", file=sys.stderr)
                return 1
            times[name].append(time.perf_counter() - started)

    if queued:
        ui = start_ui(home)
        try:
            wait_for_daemon(instance)
            times["queued"] = []
            for _ in range(runs):
                started = time.perf_counter()
                if not in_process():
                    print("a queued run failed", file=sys.stderr)
                    return 1
                times["queued"].append(time.perf_counter() - started)
        finally:
            os.killpg(ui.pid, signal.SIGINT)
            ui.wait(timeout=120)

    base = statistics.median(times["baseline"])
    print(f"{'way':<12} {'runs':>5} {'median s':>9} {'min s':>7} {'x baseline':>11}")
    figures = {}
    for name, spent in times.items():
        median = statistics.median(spent)
        figures[name] = {"runs": len(spent), "median_s": median, "min_s": min(spent)}
        print(
            f"{name:<12} {len(spent):>5} {median:>9.2f} {min(spent):>7.2f} {median / base:>11.2f}"
        )
    print(json.dumps(figures))
    return 0


def start_ui(home: Path) -> subprocess.Popen:
    """`kpi-pipelines ui` on this KPI_HOME (its code server, webserver and daemon)."""
    cli = Path(sys.executable).parent / "kpi-pipelines"
    log = (home / "ui.log").open("wb")
    return subprocess.Popen(
        [str(cli), "ui", "--port", str(free_port())],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_for_daemon(instance, timeout: float = 300) -> None:  # type: ignore[no-untyped-def]
    from kpi_pipelines.runs import queue_served

    deadline = time.monotonic() + timeout
    while not queue_served(instance):
        if time.monotonic() > deadline:
            raise SystemExit("the daemon of `kpi-pipelines ui` never served the run queue")
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
