"""How rejecting a hostile CSV scales: time, message and report size, memory; delimiter detection.

For all-invalid CSV files of 1, 5 and 10 MB (every row has a bad date and a bad value), it
times `read_csv` + `CsvTable.validate` until `TableRejected` against two baselines measured
in the same run: plain `csv.reader` iterating every record of the same bytes, and
`read_csv` + `validate` of a valid file of the same size (what accepting costs), and reports
the size of the exception's message, the size of the report file (the first rows in full,
the rest counted by reason: at most MAX_REPORT_BYTES),
and the peak of Python memory (tracemalloc, in separate passes so that it does not slow the
timed ones) of rejecting, and of accepting the valid file (which keeps a digest per row to
find duplicate keys: the process's peak RSS comes from that pass). Then it times delimiter detection on hostile samples of 16, 32 and 64 KB (the
shapes on which `csv.Sniffer` backtracks quadratically) against `csv.reader` over the same
sample, and, up to `--sniffer-max-kb`, `csv.Sniffer` itself for comparison.

Only ratios within one run are meaningful (the machine is shared). The last line printed is
one JSON object with every figure. Nothing is asserted on time; the script exits 1 if a
rejection is not what it should be (counts, bounded message and report, the first rows
listed in the report).

    python benchmarks/bench_csv_rejections.py
    python benchmarks/bench_csv_rejections.py --sizes-mb 1 5 10 --sniffer-max-kb 64
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import io
import json
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from kpi_pipelines.integrations.csv_upload.parsing import _detect_delimiter, read_csv
from kpi_pipelines.integrations.shared.rejection_reports import MAX_REPORT_BYTES, MAX_REPORTED_ROWS
from kpi_pipelines.integrations.shared.tabular import TableRejected, TabularMapping

MAPPING = TabularMapping(date_column="date", value_column="value", metric_column="metric")
HOSTILE_UNITS = {
    'quote at line start ("\\n\\"a")': '\n"a',
    'quote after delimiter (",\\"a")': ',"a',
}


def all_invalid_csv(path: Path, megabytes: float) -> int:
    """Write rows with a bad date and a bad value until the file has `megabytes`; the rows."""
    target = int(megabytes * 1024 * 1024)
    rows = 0
    with path.open("w", encoding="utf-8", newline="") as handle:
        size = handle.write("date,metric,value\n")
        while size < target:
            size += handle.write(f"2024-13-{1 + rows % 28:02},signups,x{rows}\n")
            rows += 1
    return rows


def valid_csv(path: Path, size: int) -> None:
    """A valid file of about `size` bytes: one metric per day and channel."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        written = handle.write("date,metric,value\n")
        row = 0
        while written < size:
            day = datetime.date(2000, 1, 1) + datetime.timedelta(days=row // 100)
            written += handle.write(f"{day},m{row % 100},{row}\n")
            row += 1


def best_of(repeats: int, run: Callable[[], object]) -> float:
    """The fastest of `repeats` runs, in seconds (the least disturbed by other work)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def traced_peak(run: Callable[[], object]) -> int:
    """Peak bytes of Python allocations while `run` runs (tracemalloc)."""
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def baseline_read(path: Path) -> None:
    with path.open(encoding="utf-8", newline="") as handle:
        for _ in csv.reader(handle):
            pass


def reject(path: Path, report: Path) -> TableRejected:
    table = read_csv(path, MAPPING, max_bytes=1 << 30)
    try:
        table.validate(report=report)
    except TableRejected as exc:
        return exc
    raise AssertionError(f"{path} was not rejected")


def measure_rejections(folder: Path, sizes: list[float], repeats: int) -> list[dict]:
    results = []
    for megabytes in sizes:
        path = folder / f"invalid-{megabytes:g}mb.csv"
        rows = all_invalid_csv(path, megabytes)
        report = folder / f"invalid-{megabytes:g}mb.errors.txt"
        baseline = best_of(repeats, lambda path=path: baseline_read(path))
        valid = folder / f"valid-{megabytes:g}mb.csv"
        valid_csv(valid, path.stat().st_size)
        accept = best_of(
            repeats, lambda valid=valid: read_csv(valid, MAPPING, max_bytes=1 << 30).validate()
        )
        seconds = best_of(repeats, lambda path=path, report=report: reject(path, report))
        error = reject(path, report)
        message = str(error).encode()
        with report.open(encoding="utf-8") as handle:
            listed = sum(1 for line in handle if line.startswith("line "))
        check = (
            error.bad_rows == rows
            and error.error_count == 2 * rows
            and listed == 2 * min(rows, MAX_REPORTED_ROWS)
            and report.stat().st_size <= MAX_REPORT_BYTES
            and len(message) < 8 * 1024
            and str(report) in str(error)
        )
        peak = traced_peak(lambda path=path, report=report: reject(path, report))
        # Accepting keeps one 16-byte digest per row to find duplicate keys; rejecting
        # rows keeps none of them.
        valid_peak = traced_peak(
            lambda valid=valid: read_csv(valid, MAPPING, max_bytes=1 << 30).validate()
        )
        results.append(
            {
                "file_mb": round(path.stat().st_size / 1024 / 1024, 2),
                "rows": rows,
                "errors": error.error_count,
                "baseline_s": round(baseline, 3),
                "accept_valid_s": round(accept, 3),
                "reject_s": round(seconds, 3),
                "reject_x_baseline": round(seconds / baseline, 2),
                "reject_x_accept_valid": round(seconds / accept, 2),
                "message_bytes": len(message),
                "report_mb": round(report.stat().st_size / 1024 / 1024, 2),
                "python_peak_mb": round(peak / 1024 / 1024, 2),
                "valid_python_peak_mb": round(valid_peak / 1024 / 1024, 2),
                "ok": check,
            }
        )
    return results


def measure_detection(sizes_kb: list[int], repeats: int, sniffer_max_kb: int) -> list[dict]:
    results = []
    for label, unit in HOSTILE_UNITS.items():
        for kb in sizes_kb:
            sample = "date,metric,value\n" + (unit * (kb * 1024 // len(unit) + 1))[: kb * 1024]
            baseline = best_of(repeats, lambda s=sample: list(csv.reader(io.StringIO(s))))
            detection = best_of(repeats, lambda s=sample: _detect_delimiter(s, MAPPING))
            row: dict = {
                "sample": label,
                "kb": kb,
                "baseline_s": round(baseline, 5),
                "detect_s": round(detection, 5),
                "detect_x_baseline": round(detection / baseline, 2),
                "sniffer_s": None,
                "sniffer_x_baseline": None,
            }
            if kb <= sniffer_max_kb:
                sniffed = best_of(1, lambda s=sample: _sniff(s))
                row["sniffer_s"] = round(sniffed, 3)
                row["sniffer_x_baseline"] = round(sniffed / baseline)
            results.append(row)
    return results


def _sniff(sample: str) -> None:
    with contextlib.suppress(csv.Error):
        csv.Sniffer().sniff(sample, delimiters=",;\t|")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes-mb", type=float, nargs="+", default=[1, 5, 10])
    parser.add_argument("--sample-kb", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--sniffer-max-kb",
        type=int,
        default=32,
        help="time csv.Sniffer on samples up to this size (64 KB takes about a minute)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-csv-") as folder:
        rejections = measure_rejections(Path(folder), args.sizes_mb, args.repeats)
    detection = measure_detection(args.sample_kb, max(args.repeats, 5), args.sniffer_max_kb)

    print("Rejecting an all-invalid CSV (read_csv + validate), best of", args.repeats)
    print(
        f"{'file MB':>8} {'rows':>8} {'errors':>8} {'baseline s':>11} {'valid s':>8}"
        f" {'reject s':>9} {'x baseline':>11} {'x valid':>8} {'message B':>10} {'report MB':>10}"
        f" {'py peak MB':>11} {'valid py MB':>12}"
    )
    for r in rejections:
        print(
            f"{r['file_mb']:>8} {r['rows']:>8} {r['errors']:>8} {r['baseline_s']:>11}"
            f" {r['accept_valid_s']:>8} {r['reject_s']:>9} {r['reject_x_baseline']:>11}"
            f" {r['reject_x_accept_valid']:>8} {r['message_bytes']:>10} {r['report_mb']:>10}"
            f" {r['python_peak_mb']:>11} {r['valid_python_peak_mb']:>12}"
        )
    print("\nDelimiter detection on hostile samples, against csv.reader over the same sample")
    print(
        f"{'sample':<34} {'KB':>4} {'baseline s':>11} {'detect s':>9} {'x baseline':>11}"
        f" {'Sniffer s':>10} {'Sniffer x':>10}"
    )
    for d in detection:
        print(
            f"{d['sample']:<34} {d['kb']:>4} {d['baseline_s']:>11} {d['detect_s']:>9}"
            f" {d['detect_x_baseline']:>11} {d['sniffer_s'] if d['sniffer_s'] is not None else '-':>10}"
            f" {d['sniffer_x_baseline'] if d['sniffer_x_baseline'] is not None else '-':>10}"
        )
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ok = all(r["ok"] for r in rejections)
    print(f"\npeak RSS of the process: {peak_rss:.0f} MB; rejections as expected: {ok}")
    print(json.dumps({"rejections": rejections, "detection": detection, "peak_rss_mb": peak_rss}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
