"""The adapter contract's shared machinery on the real warehouse: batches, crash, rerun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from kpi_pipelines.integrations.shared.base_adapter import (
    AdapterNotConnected,
    IntegrationAdapter,
    SyncContext,
)
from kpi_pipelines.models import KPIData, SyncResult, day_timestamp
from kpi_pipelines.warehouse.control import Connection, get_workspace
from kpi_pipelines.warehouse.database import Warehouse

RECORDS = 1000
BATCH = 100


class ProbeAdapter(IntegrationAdapter):
    """A provider whose records are generated: exercises batching exactly like a real one."""

    provider = "probe"
    pause: float = 0.0
    announce: bool = False

    def check_connection(self) -> None:
        if self.context.connection.provider != self.provider:
            raise ValueError("not a probe connection")

    def sync(self) -> SyncResult:
        writer = self.point_writer()
        with writer.open():
            for i in range(RECORDS):
                writer.add_all(self.transform({"i": i}))
                if (i + 1) % BATCH == 0 and self.announce:
                    print(f"committed {(i + 1) // BATCH}", flush=True)
                    time.sleep(self.pause)
        return SyncResult(
            success=True,
            records_processed=RECORDS,
            points_written=writer.stats.written,
            last_sync_at=writer.fetched_at,
        )

    def transform(self, raw: dict[str, Any]) -> list[KPIData]:
        i = raw["i"]
        return [
            KPIData(
                value=float(i * 7 % 101),
                timestamp=day_timestamp(date(2026, 1, 1) + timedelta(days=i // 10)),
                source=self.provider,
                workspace_id=self.context.workspace.id,
                metric="probe_value",
                dimensions={"plan": f"p{i % 10}"},
                metadata={"granularity": "day"},
            )
        ]


def run_probe_sync(workspace_id: str, **config: Any) -> SyncResult:
    warehouse = Warehouse.connect().ensure_ready()
    with warehouse.control() as db:
        workspace = get_workspace(db, workspace_id)
    adapter = ProbeAdapter(batch_size=BATCH, **config)
    context = SyncContext(
        warehouse=warehouse,
        workspace=workspace,
        connection=Connection(workspace_id=workspace_id, provider="probe"),
        run_id=f"probe-{os.getpid()}",
    )
    adapter.connect(context)
    try:
        return adapter.sync()
    finally:
        adapter.disconnect()


def series(warehouse: Warehouse, workspace_id: str) -> list[tuple]:
    with warehouse.tenant(workspace_id, actor="test") as db:
        return db.execute(
            sa.text(
                'SELECT metric, "timestamp", dimensions_key, value, metadata FROM kpi_data'
                ' ORDER BY metric, "timestamp", dimensions_key'
            )
        ).all()


def audit_count(warehouse: Warehouse, workspace_id: str) -> int:
    with warehouse.tenant(workspace_id, actor="test") as db:
        return db.execute(sa.text("SELECT count(*) FROM audit_log")).scalar_one()


def test_sync_killed_between_batches_then_rerun_equals_an_uninterrupted_sync(
    warehouse, workspace_a, workspace_b
) -> None:
    script = (
        "from kpi_pipelines_tests.integrations.shared.test_base_adapter import run_probe_sync\n"
        "run_probe_sync('ws-a', pause=0.5, announce=True)\n"
    )
    victim = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert victim.stdout is not None
    for _ in range(3):
        assert victim.stdout.readline().startswith("committed")
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)

    partial = series(warehouse, "ws-a")
    assert 0 < len(partial) < RECORDS
    assert len(partial) % BATCH == 0, "a half batch was committed"

    run_probe_sync("ws-a")
    run_probe_sync("ws-b")
    assert series(warehouse, "ws-a") == series(warehouse, "ws-b")
    assert len(series(warehouse, "ws-a")) == RECORDS
    # The rerun rewrote nothing it had already stored: one audit row per point, as ws-b.
    assert audit_count(warehouse, "ws-a") == audit_count(warehouse, "ws-b") == RECORDS


def test_batches_follow_the_configured_size(warehouse, workspace_a, monkeypatch) -> None:
    monkeypatch.setenv("KPI_BATCH_SIZE", "250")
    warehouse_ = Warehouse.connect()
    with warehouse_.control() as db:
        workspace = get_workspace(db, "ws-a")
    adapter = ProbeAdapter()
    assert adapter.effective_batch_size() == 250
    adapter.connect(
        SyncContext(
            warehouse=warehouse_,
            workspace=workspace,
            connection=Connection(workspace_id="ws-a", provider="probe"),
            run_id="r1",
        )
    )
    result = adapter.sync()
    adapter.disconnect()
    assert result.points_written == RECORDS
    with warehouse_.tenant("ws-a", actor="test") as db:
        # Each row's xmin is the transaction that wrote it: one transaction per batch.
        transactions = db.execute(
            sa.text("SELECT count(DISTINCT xmin::text) FROM kpi_data")
        ).scalar()
    assert transactions == RECORDS // 250


def test_sync_before_connect_is_refused() -> None:
    with pytest.raises(AdapterNotConnected, match="call connect"):
        ProbeAdapter().sync()
