"""What loading the Definitions costs a process: every run worker, the code server and the
daemon pay it, so a scheduled tick pays it once per run.

Fresh interpreters, alternating `--runs` times each:

- baseline: `import dagster` alone, the floor any code location pays;
- definitions: `import kpi_pipelines.definitions` and building its `defs` (every provider's
  assets, jobs, schedules, sensors, checks and resources);
- `--rev REV` (optional): the same for another commit of this repository, checked out in a
  temporary git worktree, so a change is compared with the code before it in one run.

Each figure is the child's own CPU time (user + system, from `os.wait4`) and its peak RSS:
CPU-seconds, not wall time, so other work on a shared machine distorts them less. Only
ratios within one run are meaningful; nothing is asserted on time. The last line printed is
one JSON object with every figure.

    python benchmarks/bench_definitions_import.py                  # 5 runs each
    python benchmarks/bench_definitions_import.py --rev HEAD~1     # and the code before
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "import dagster"
DEFINITIONS = "import kpi_pipelines.definitions as d; d.defs"


def measure(code: str, cwd: Path) -> tuple[float, float]:
    """CPU seconds and peak RSS (MB) of a fresh interpreter running `code` in `cwd` (whose
    `kpi_pipelines` package it imports first)."""
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    child = subprocess.Popen([sys.executable, "-c", code], cwd=cwd, env=env)
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"`python -c {code!r}` in {cwd} failed")
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rev", help="also measure this commit's definitions")
    args = parser.parse_args()

    ways = {"baseline (import dagster)": (BASELINE, ROOT), "definitions": (DEFINITIONS, ROOT)}
    with tempfile.TemporaryDirectory(prefix="kpi-bench-import-") as scratch:
        if args.rev:
            other = Path(scratch) / "rev"
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(other), args.rev],
                check=True,
                capture_output=True,
            )
            ways[f"definitions at {args.rev}"] = (DEFINITIONS, other)
        try:
            figures: dict[str, list[tuple[float, float]]] = {way: [] for way in ways}
            for _ in range(args.runs):
                for way, (code, cwd) in ways.items():
                    figures[way].append(measure(code, cwd))
        finally:
            if args.rev:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(other)],
                    check=False,
                    capture_output=True,
                )

    floor = statistics.median(cpu for cpu, _ in figures["baseline (import dagster)"])
    print(f"{'way':<34} {'median CPU s':>12} {'x baseline':>10} {'peak RSS MB':>12}")
    summary = {}
    for way, runs in figures.items():
        cpu = statistics.median(c for c, _ in runs)
        rss = statistics.median(r for _, r in runs)
        print(f"{way:<34} {cpu:>12.2f} {cpu / floor:>10.2f} {rss:>12.0f}")
        summary[way] = {"cpu_s": round(cpu, 3), "x_baseline": round(cpu / floor, 2), "rss_mb": rss}
    print(json.dumps({"runs": args.runs, "figures": summary}))


if __name__ == "__main__":
    main()
