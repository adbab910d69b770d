"""Benchmark the one write path (warehouse.writer.write_kpis) against a plain binary COPY.

One run, one server, the same rows, the same batch size, one transaction per batch:

1. baseline: binary COPY (psycopg 3) into an ordinary table with kpi_data's columns and
   primary key and nothing else (no triggers, no foreign key, no RLS, no second index), as
   the admin connection. Each write-path phase is paired with its own baseline run: the
   baseline table is emptied, then every batch is COPY'd into it right before or after
   (alternately) the same batch goes through the write path, so that a busy machine slows
   both alike; each phase's ratio is against its own baseline;
2. first load: write_kpis in tenant transactions (all inserts, each one audited);
3. identical re-write: the same rows again (nothing written, nothing audited);
4. restatement: the same keys with 1% of the values changed and a newer source timestamp
   (exactly the changed rows are written, and audited);
5. peak RSS of this process and the audit_log row count.

Then, in transactions that are rolled back, EXPLAIN ANALYZE of one batch's merge (new keys,
and a 1% restatement) to show where the write path's server time goes: the read that judges
the staged rows, the statements that write, the foreign key check, the audit triggers.

Speed is reported as ratios to the baseline measured in the same run and never asserted.
What is checked (exit 1 otherwise): each phase's write stats and the audit rows it added
(first load: one per row; re-write: none; restatement: one per changed row).

    python benchmarks/bench_write_path.py --rows 200000

Without KPI_DATABASE_URL it starts its own embedded PostgreSQL under a fresh temporary
KPI_HOME (removed on exit) or under --home. On a server it did not create it removes what it
added (its workspace, whose rows go by cascade, and the baseline schema).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from kpi_pipelines import settings
from kpi_pipelines.models import KPIData, day_timestamp
from kpi_pipelines.warehouse import writer
from kpi_pipelines.warehouse.control import (
    UnknownWorkspace,
    Workspace,
    add_workspace,
    remove_workspace,
)
from kpi_pipelines.warehouse.database import Warehouse, scope_proof
from kpi_pipelines.warehouse.writer import WriteStats, staged_kpi_row, write_kpis

METRICS = tuple(f"bench_metric_{n:02d}" for n in range(50))
PLANS = ("free", "starter", "pro", "enterprise")
ROWS_PER_DAY = len(METRICS) * len(PLANS)
FIRST_DAY = date(2020, 1, 1)
SOURCE = "bench"
LOADED_AT = datetime(2025, 1, 1, tzinfo=UTC)
# Row i changes in every restatement when i % CHANGE_EVERY == CHANGE_PHASE: exactly 1%.
CHANGE_EVERY = 100
CHANGE_PHASE = 37

BASELINE_SCHEMA = "kpi_bench"
BASELINE_TABLE = f"{BASELINE_SCHEMA}.kpi_data_baseline"
KPI_KEY = ("workspace_id", "source", "metric", '"timestamp"', "dimensions_key")
# What write_kpis stages, plus the two columns its merge fills in itself.
BASELINE_COLUMNS = (*writer._KPI_COLUMNS, "origin", "changed_by")
BASELINE_TYPES = (*writer._KPI_TYPES, "text", "text")


# Deterministic data, generated one batch at a time.


def changed_count(rows: int) -> int:
    return len(range(CHANGE_PHASE, rows, CHANGE_EVERY))


def make_points(workspace_id: str, start: int, stop: int, *, revision: int = 0) -> list[KPIData]:
    """Rows [start, stop): day-major, then metric, then plan.

    Revision 0 is the first load; each later revision changes the same 1% of the values
    again and carries a source timestamp one day newer.
    """
    source_ts = LOADED_AT + timedelta(days=revision)
    points = []
    for i in range(start, stop):
        day, rest = divmod(i, ROWS_PER_DAY)
        metric, plan = divmod(rest, len(PLANS))
        value = (i * 2_654_435_761 % 10_000_000) / 100
        if i % CHANGE_EVERY == CHANGE_PHASE:
            value += revision
        points.append(
            KPIData(
                value=value,
                timestamp=day_timestamp(FIRST_DAY + timedelta(days=day)),
                metadata={"currency": "USD"},
                source=SOURCE,
                workspace_id=workspace_id,
                metric=METRICS[metric],
                dimensions={"plan": PLANS[plan]},
                source_ts=source_ts,
            )
        )
    return points


def batches(rows: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, rows, size):
        yield start, min(start + size, rows)


def staged_row(point: KPIData) -> tuple[Any, ...]:
    """The per-row work write_kpis does before COPY: canonical key, Jsonb, source_ts."""
    return staged_kpi_row(point, LOADED_AT)


# The phases.


@dataclass
class Phase:
    name: str
    rows: int = 0
    seconds: float = 0.0  # inside the batch transactions, commit included, generation excluded
    generate_seconds: float = 0.0  # building the KPIData objects (not in `seconds`)
    copy_seconds: float = 0.0  # COPY (staging or baseline table), Python encoding included
    statement_seconds: float = 0.0  # write_kpis minus its COPY: the merge and its triggers
    stats: WriteStats = field(default_factory=WriteStats)
    audit_added: int = 0

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def transaction_seconds(self) -> float:
        """Begin, workspace scoping and commit: what is neither COPY nor statement."""
        return max(self.seconds - self.copy_seconds - self.statement_seconds, 0.0)


class CopyTimer:
    """Times writer._copy_into_stage by wrapping it for the phase (writer.py is untouched)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._original: Callable[..., Any] = writer._copy_into_stage

    def __enter__(self) -> CopyTimer:
        original = self._original

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        writer._copy_into_stage = timed
        return self

    def __exit__(self, *_exc: object) -> None:
        writer._copy_into_stage = self._original


def create_baseline_table(warehouse: Warehouse) -> None:
    with warehouse.engine(None).begin() as db:
        db.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {BASELINE_SCHEMA}"))
        db.execute(sa.text(f"DROP TABLE IF EXISTS {BASELINE_TABLE}"))
        db.execute(
            sa.text(
                f"CREATE TABLE {BASELINE_TABLE}"
                " (LIKE kpi.kpi_data INCLUDING DEFAULTS INCLUDING CONSTRAINTS,"
                f" PRIMARY KEY ({', '.join(KPI_KEY)}))"
            )
        )


def copy_baseline_batch(warehouse: Warehouse, points: list[KPIData], into: Phase) -> None:
    """One batch COPY'd into the plain table as the admin connection, in its own transaction."""
    copy_sql = f"COPY {BASELINE_TABLE} ({', '.join(BASELINE_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
    began = time.perf_counter()
    with warehouse.engine(None).begin() as db:
        driver = db.connection.driver_connection
        assert driver is not None
        copy_began = time.perf_counter()
        with driver.cursor() as cursor, cursor.copy(copy_sql) as copy:
            copy.set_types(list(BASELINE_TYPES))
            for point in points:
                copy.write_row((*staged_row(point), "sync", "bench"))
        into.copy_seconds += time.perf_counter() - copy_began
    into.seconds += time.perf_counter() - began
    into.rows += len(points)


def write_batch(
    warehouse: Warehouse,
    workspace_id: str,
    points: list[KPIData],
    into: Phase,
    copy_timer: CopyTimer,
    *,
    actor: str,
    fetched_at: datetime,
) -> None:
    """One batch through write_kpis in its own tenant transaction, as BatchWriter.flush does."""
    began = time.perf_counter()
    with warehouse.tenant(workspace_id, actor=actor) as db:
        copied_before = copy_timer.seconds
        called = time.perf_counter()
        into.stats += write_kpis(db, points, fetched_at=fetched_at)
        copied = copy_timer.seconds - copied_before
        into.copy_seconds += copied
        into.statement_seconds += time.perf_counter() - called - copied
    into.seconds += time.perf_counter() - began
    into.rows += len(points)


def audit_rows(warehouse: Warehouse, workspace_id: str) -> int:
    with warehouse.tenant(workspace_id, actor="bench") as db:
        return int(db.execute(sa.text("SELECT count(*) FROM audit_log")).scalar_one())


def run_phase(
    warehouse: Warehouse, workspace_id: str, name: str, rows: int, size: int, *, revision: int
) -> tuple[Phase, Phase]:
    """The write path over all rows, each batch paired with a baseline COPY of the same rows.

    The baseline table is emptied first, so each phase's baseline is the same fresh load;
    the two alternate batch by batch so that a busy neighbour slows both alike.
    """
    phase, baseline = Phase(name), Phase(f"baseline for {name}")
    with warehouse.engine(None).begin() as db:
        db.execute(sa.text(f"TRUNCATE {BASELINE_TABLE}"))
    actor = f"bench:{name.replace(' ', '-')}"
    fetched_at = datetime.now(UTC)
    audit_before = audit_rows(warehouse, workspace_id)
    with CopyTimer() as copy_timer:
        for n, (start, stop) in enumerate(batches(rows, size)):
            generated = time.perf_counter()
            points = make_points(workspace_id, start, stop, revision=revision)
            phase.generate_seconds += time.perf_counter() - generated
            baseline_first = n % 2 == 0
            if baseline_first:
                copy_baseline_batch(warehouse, points, baseline)
            write_batch(
                warehouse,
                workspace_id,
                points,
                phase,
                copy_timer,
                actor=actor,
                fetched_at=fetched_at,
            )
            if not baseline_first:
                copy_baseline_batch(warehouse, points, baseline)
    phase.audit_added = audit_rows(warehouse, workspace_id) - audit_before
    return phase, baseline


def explain_batch(
    warehouse: Warehouse, workspace_id: str, start: int, stop: int, *, revision: int
) -> dict[str, Any]:
    """EXPLAIN ANALYZE of one batch's merge, in a transaction rolled back. The merge's
    statements run inside the owner's function `kpi.merge_kpi_stage()`, which EXPLAIN does not
    enter: the server's auto_explain reports each nested statement (triggers included) as a
    notice. Only
    a superuser may load it, so the admin connection runs the write path's steps itself, in
    a scope proved as `Warehouse.tenant` proves it."""
    rows = [staged_row(p) for p in make_points(workspace_id, start, stop, revision=revision)]
    plans: list[dict[str, Any]] = []
    with warehouse.engine(None).connect() as db:
        driver = db.connection.driver_connection
        assert driver is not None
        driver.add_notice_handler(
            lambda notice: (
                plans.append(json.loads(notice.message_primary.split("\n", 1)[1]))
                if (notice.message_primary or "").startswith("duration:")
                else None
            )
        )
        transaction = db.begin()
        try:
            xact = db.execute(sa.text("SELECT pg_current_xact_id()::text")).scalar_one()
            actor = "bench:explain"
            db.execute(
                sa.text(
                    "SELECT set_config('kpi.workspace_id', :ws, true),"
                    " set_config('kpi.actor', :actor, true),"
                    " set_config('kpi.scope_proof', :proof, true)"
                ),
                {
                    "ws": workspace_id,
                    "actor": actor,
                    "proof": scope_proof(warehouse._scope_key(), workspace_id, actor, xact),
                },
            )
            began = time.perf_counter()
            cursor = writer._copy_into_stage(
                db, "kpi_stage", writer._KPI_COLUMNS, writer._KPI_TYPES, rows
            )
            copy_ms = (time.perf_counter() - began) * 1000
            for setting in (
                "LOAD 'auto_explain'",
                "SET LOCAL auto_explain.log_min_duration = 0",
                "SET LOCAL auto_explain.log_analyze = on",
                "SET LOCAL auto_explain.log_triggers = on",
                "SET LOCAL auto_explain.log_nested_statements = on",
                "SET LOCAL auto_explain.log_format = json",
                "SET LOCAL auto_explain.log_level = notice",
            ):
                cursor.execute(setting)
            cursor.execute("SELECT inserted + updated FROM kpi.merge_kpi_stage()")
            written = int(cursor.fetchone()[0])
        finally:
            transaction.rollback()
    # The merge's statements on kpi_data: the read that judges the staged rows against the
    # stored ones (not needed when every key is new: the first INSERT tried succeeds), and
    # the INSERT and UPDATE that write (none for an unchanged batch). A statement that
    # failed (the INSERT tried first, when a key is stored) is not reported.
    judge = next((plan for plan in plans if _judges_stage(plan)), None)
    writes = [plan for plan in plans if _writes_kpi_data(plan)]
    triggers: dict[str, float] = {}
    for write in writes:
        for trigger in write.get("Triggers", []):
            # RI_ConstraintTrigger_*: the foreign key's per-row check.
            name = trigger["Trigger Name"]
            label = "foreign key" if name.startswith("RI_") else name
            triggers[label] = round(triggers.get(label, 0.0) + trigger["Time"], 1)
    statements = sum(plan["Plan"]["Actual Total Time"] for plan in writes)
    judge_ms = judge["Plan"]["Actual Total Time"] if judge else 0.0
    return {
        "rows": len(rows),
        "written": written,
        "copy_to_stage_ms": round(copy_ms, 1),
        "execution_ms": round(judge_ms + statements + sum(triggers.values()), 1),
        "judge_ms": round(judge_ms, 1),
        "statement_ms": round(statements, 1),
        "triggers_ms": triggers,
    }


def _judges_stage(plan: dict[str, Any]) -> bool:
    text = plan["Query Text"]
    return "pg_temp.kpi_stage" in text and "array_agg" in text


def _writes_kpi_data(plan: dict[str, Any]) -> bool:
    top = plan["Plan"]
    return top["Node Type"] == "ModifyTable" and top.get("Relation Name") == "kpi_data"


# Report.


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[c]) for r in rows)) for c, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(width) if c == 0 else cell.rjust(width)
            for c, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    print(line(headers))
    for row in rows:
        print(line(row))


def combined(name: str, phases: list[Phase]) -> Phase:
    total = Phase(name)
    for phase in phases:
        total.rows += phase.rows
        total.seconds += phase.seconds
        total.copy_seconds += phase.copy_seconds
    return total


def phase_json(phase: Phase, baseline: Phase | None = None) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "rows": phase.rows,
        "seconds": round(phase.seconds, 3),
        "rows_per_s": round(phase.rows_per_s),
        "copy_seconds": round(phase.copy_seconds, 3),
        "transaction_seconds": round(phase.transaction_seconds, 3),
    }
    if baseline is not None:
        figures |= {
            "baseline_rows_per_s": round(baseline.rows_per_s),
            "ratio_to_baseline": round(phase.rows_per_s / baseline.rows_per_s, 3),
            "statement_seconds": round(phase.statement_seconds, 3),
            "generate_seconds": round(phase.generate_seconds, 3),
            "inserted": phase.stats.inserted,
            "updated": phase.stats.updated,
            "unchanged": phase.stats.unchanged,
            "audit_added": phase.audit_added,
        }
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Measure the KPI write path against a plain binary COPY, in one run."
    )
    parser.add_argument("--rows", type=int, default=200_000, help="rows per phase")
    parser.add_argument("--batch-size", type=int, default=5000, help="rows per transaction")
    parser.add_argument(
        "--home",
        type=Path,
        default=None,
        help="KPI_HOME of the embedded server (default: a fresh temporary folder);"
        " ignored when KPI_DATABASE_URL is set",
    )
    args = parser.parse_args(argv)
    if args.rows <= 0 or args.batch_size <= 0:
        parser.error("--rows and --batch-size must be positive")
    rows, size = args.rows, args.batch_size
    changed = changed_count(rows)

    own_server = False
    if settings.database_url():
        home, where = None, "KPI_DATABASE_URL"
    else:
        home = args.home
        if home is None:
            home = Path(tempfile.mkdtemp(prefix="kpi_bench_"))
            own_server = True
            # Registered before the embedded server's own exit hook, so it runs after the
            # server has stopped (exit hooks run last-registered first).
            atexit.register(shutil.rmtree, home, ignore_errors=True)
        home = home.expanduser().resolve()
        os.environ["KPI_HOME"] = str(home)
        where = f"embedded, KPI_HOME={home}"

    warehouse = Warehouse.connect(home=home).ensure_ready()
    workspace_id = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        add_workspace(warehouse, Workspace(id=workspace_id, name="write-path benchmark"))
        with warehouse.engine(None).connect() as db:
            server_version = db.execute(sa.text("SHOW server_version")).scalar_one()
        print(
            f"write-path benchmark: {rows:,} rows in batches of {size:,};"
            f" PostgreSQL {server_version} ({where}); {os.cpu_count()} CPUs;"
            f" Python {platform.python_version()}",
            flush=True,
        )
        create_baseline_table(warehouse)
        # Warm up both pools, the adapters and the catalog caches, in a workspace of its own
        # that is removed at once (its rows go by cascade).
        warm_up_id = f"{workspace_id}-warm-up"
        add_workspace(warehouse, Workspace(id=warm_up_id, name="write-path benchmark warm-up"))
        warm_up = make_points(warm_up_id, 0, min(size, rows))
        copy_baseline_batch(warehouse, warm_up, Phase("warm-up"))
        with CopyTimer() as timer:
            write_batch(
                warehouse,
                warm_up_id,
                warm_up,
                Phase("warm-up"),
                timer,
                actor="bench:warm-up",
                fetched_at=LOADED_AT,
            )
        remove_workspace(warehouse, warm_up_id)

        first, first_base = run_phase(warehouse, workspace_id, "first load", rows, size, revision=0)
        again, again_base = run_phase(
            warehouse, workspace_id, "identical re-write", rows, size, revision=0
        )
        restatement, restatement_base = run_phase(
            warehouse, workspace_id, "restatement 1%", rows, size, revision=1
        )
        explained = {
            # keys past the loaded ones: all inserts
            "new keys": explain_batch(
                warehouse, workspace_id, rows, rows + min(size, rows), revision=0
            ),
            # the first batch's keys, the same 1% changed once more
            "1% restatement": explain_batch(
                warehouse, workspace_id, 0, min(size, rows), revision=2
            ),
        }
        audit_total = audit_rows(warehouse, workspace_id)
        peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    finally:
        try:
            if not own_server:
                # A shared or kept server: leave nothing behind (the cascade drops the rows).
                with contextlib.suppress(UnknownWorkspace):
                    remove_workspace(warehouse, workspace_id)
                with warehouse.engine(None).begin() as db:
                    db.execute(sa.text(f"DROP SCHEMA IF EXISTS {BASELINE_SCHEMA} CASCADE"))
        finally:
            warehouse.dispose()

    # What was written is checked; speed never is.
    problems = []
    expected = [
        (first, WriteStats(inserted=rows), rows),
        (again, WriteStats(unchanged=rows), 0),
        (restatement, WriteStats(updated=changed, unchanged=rows - changed), changed),
    ]
    for phase, stats, audited in expected:
        if phase.stats != stats:
            problems.append(f"{phase.name}: write stats {phase.stats}, expected {stats}")
        if phase.audit_added != audited:
            problems.append(f"{phase.name}: {phase.audit_added} audit rows added, not {audited}")

    pairs = [(first, first_base), (again, again_base), (restatement, restatement_base)]
    baseline = combined("baseline COPY", [base for _, base in pairs])
    table = [
        [
            f"{baseline.name} (x{len(pairs)})",
            f"{baseline.rows:,}",
            f"{baseline.seconds:.2f}",
            f"{baseline.rows_per_s:,.0f}",
            f"{baseline.rows_per_s:,.0f}",
            "1.00",
            f"{baseline.copy_seconds:.2f}",
            "-",
            f"{baseline.transaction_seconds:.2f}",
            "-",
            "-",
        ]
    ]
    for phase, base in pairs:
        table.append(
            [
                phase.name,
                f"{phase.rows:,}",
                f"{phase.seconds:.2f}",
                f"{phase.rows_per_s:,.0f}",
                f"{base.rows_per_s:,.0f}",
                f"{phase.rows_per_s / base.rows_per_s:.2f}",
                f"{phase.copy_seconds:.2f}",
                f"{phase.statement_seconds:.2f}",
                f"{phase.transaction_seconds:.2f}",
                f"{phase.stats.written:,}",
                f"{phase.audit_added:,}",
            ]
        )
    print()
    print_table(
        [
            "phase",
            "rows",
            "s",
            "rows/s",
            "baseline rows/s",
            "x baseline",
            "COPY s",
            "merge s",
            "commit s",
            "written",
            "audited",
        ],
        table,
    )
    print()
    rates = sorted(base.rows_per_s for _, base in pairs)
    print(
        f"baseline: each phase's batches alternate with a COPY of the same rows into an emptied"
        f" plain table; its {len(pairs)} runs: {rates[0]:,.0f} to {rates[-1]:,.0f} rows/s"
    )
    verdict = "equal" if restatement.audit_added == changed else "MISMATCH"
    print(
        f"restatement: {changed:,} values changed, {restatement.audit_added:,} audit rows"
        f" added ({verdict})"
    )
    print(f"audit_log rows for the workspace: {audit_total:,}")
    print(f"peak RSS of this process: {peak_rss_mib:,.0f} MiB")
    for label, plan in explained.items():
        triggers = ", ".join(f"{name} {ms} ms" for name, ms in plan["triggers_ms"].items())
        print(
            f"EXPLAIN ANALYZE, one batch of {plan['rows']:,} rows, {label}"
            f" ({plan['written']:,} written; rolled back): COPY to stage"
            f" {plan['copy_to_stage_ms']} ms, judging {plan['judge_ms']} ms,"
            f" writing statements {plan['statement_ms']} ms,"
            f" triggers: {triggers or 'none'}"
        )
    if explained:
        print(
            "(auto_explain times every statement nested in the merge, each foreign-key check"
            " among them: trigger times are inflated; the phases' ratios above are the measure)"
        )
    for problem in problems:
        print(f"CHECK FAILED: {problem}", file=sys.stderr)
    print(
        json.dumps(
            {
                "benchmark": "write_path",
                "rows": rows,
                "batch_size": size,
                "server_version": server_version,
                "cpus": os.cpu_count(),
                "baseline": phase_json(baseline),
                "first_load": phase_json(first, first_base),
                "identical_rewrite": phase_json(again, again_base),
                "restatement": {**phase_json(restatement, restatement_base), "changed": changed},
                "audit_log_rows": audit_total,
                "peak_rss_mib": round(peak_rss_mib, 1),
                "explain": explained,
                "checks_passed": not problems,
            },
            separators=(",", ":"),
        ),
        flush=True,
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
