"""The adapter contract's shared machinery on the real warehouse: batches, crash, rerun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from kpi_pipelines.integrations.shared import base_adapter
from kpi_pipelines.integrations.shared.base_adapter import (
    AdapterNotConnected,
    BatchWriter,
    IntegrationAdapter,
    SyncContext,
)
from kpi_pipelines.models import KPIData, SyncResult, day_timestamp
from kpi_pipelines.warehouse.control import Connection, get_workspace
from kpi_pipelines.warehouse.database import Warehouse
from kpi_pipelines.warehouse.writer import RawRecord, write_raw_records

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


def _record(record_id: str, version: int) -> RawRecord:
    return RawRecord("objects", record_id, {"id": record_id, "version": version})


def _record_key(record: RawRecord) -> tuple[str, str]:
    return record.stream, record.record_id


class WatchedWrites:
    """The real raw write path, noting when each batch's write starts and ends; the first
    batch's write waits (bounded) until a second one has started."""

    def __init__(self) -> None:
        self.log: list[tuple[str, int]] = []
        self.second_started = threading.Event()
        self.overlapped = False
        self._lock = threading.Lock()
        self._batches = 0

    def __call__(self, db: Any, batch: list[RawRecord], fetched_at: Any) -> int:
        with self._lock:
            self._batches += 1
            number = self._batches
            self.log.append(("start", number))
        if number == 1:
            self.overlapped = self.second_started.wait(timeout=10)
        else:
            self.second_started.set()
        written = write_raw_records(db, "probe", batch, fetched_at=fetched_at)
        with self._lock:
            self.log.append(("end", number))
        return written


def _context(warehouse: Warehouse, workspace_id: str) -> SyncContext:
    with warehouse.control() as db:
        workspace = get_workspace(db, workspace_id)
    return SyncContext(
        warehouse=warehouse,
        workspace=workspace,
        connection=Connection(workspace_id=workspace_id, provider="probe"),
        run_id="r-lanes",
    )


def landed_versions(warehouse: Warehouse, workspace_id: str) -> dict[str, int]:
    with warehouse.tenant(workspace_id, actor="test") as db:
        rows = db.execute(sa.text("SELECT record_id, payload->>'version' FROM raw_records"))
        return {record_id: int(version) for record_id, version in rows}


def _two_in_flight(warehouse: Warehouse, write: Any) -> BatchWriter[RawRecord]:
    """A background writer of 2-record batches, two of them in flight at once, into ws-a."""
    return BatchWriter(
        _context(warehouse, "ws-a"),
        write,
        batch_size=2,
        background=True,
        in_flight=2,
        key=_record_key,
    )


def test_background_batches_in_flight_at_once_never_share_a_key_and_keep_its_order(
    warehouse, workspace_a
) -> None:
    writes = WatchedWrites()
    writer = _two_in_flight(warehouse, writes)
    with writer.open():
        writer.add_all([_record("k1", 1), _record("k2", 1)])  # batch 1
        writer.add_all([_record("k3", 1), _record("k4", 1)])  # batch 2: no key of batch 1
        writer.add_all([_record("k1", 2), _record("k5", 1)])  # batch 3: k1 again
    assert writes.overlapped, "batches without a shared key were not written at once"
    log = writes.log
    assert log.index(("start", 3)) > log.index(("end", 1)), log
    assert landed_versions(warehouse, "ws-a") == {"k1": 2, "k2": 1, "k3": 1, "k4": 1, "k5": 1}
    # five new records, and k1 written again: counted from both threads
    assert writer.stats.inserted == 6


def test_a_failed_background_write_is_raised_to_the_caller_and_the_rest_still_lands(
    warehouse, workspace_a
) -> None:
    def refusing(db: Any, batch: list[RawRecord], fetched_at: Any) -> int:
        if any(record.record_id == "bad" for record in batch):
            raise RuntimeError("the database refused the batch holding 'bad'")
        return write_raw_records(db, "probe", batch, fetched_at=fetched_at)

    writer = _two_in_flight(warehouse, refusing)
    with pytest.raises(RuntimeError, match="holding 'bad'"), writer.open():
        writer.add_all([_record("bad", 1), _record("k1", 1)])
        writer.add_all([_record("k2", 1), _record("k3", 1)])
        for n in range(100):  # the failure surfaces at a later call, not after the sync
            writer.add_all([_record(f"more{n}", 1)])
    # batches are their own transactions: what was written before stays, the refused one not
    landed = landed_versions(warehouse, "ws-a")
    assert "bad" not in landed and "k1" not in landed
    assert len(landed) < 102


def test_batches_in_flight_at_once_need_a_background_writer_and_keys(
    warehouse, workspace_a
) -> None:
    context = _context(warehouse, "ws-a")
    for options in ({"background": False, "key": _record_key}, {"background": True}):
        with pytest.raises(ValueError, match="in flight at once"):
            BatchWriter(context, write_raw_records, batch_size=2, in_flight=2, **options)


def _json_record(record_id: str, filler: int) -> RawRecord:
    """A record as the object engine lands it: the provider's JSON text."""
    return RawRecord("objects", record_id, f'{{"id":"{record_id}","x":"{"y" * filler}"}}'.encode())


def test_raw_batches_are_written_once_their_payloads_reach_the_byte_bound(
    warehouse, workspace_a, monkeypatch
) -> None:
    monkeypatch.setattr(base_adapter, "RAW_BATCH_BYTES", 250)
    adapter = ProbeAdapter()
    adapter.connect(_context(warehouse, "ws-a"))
    records = [_json_record(f"r{n}", 82) for n in range(10)]
    assert {len(record.payload) for record in records} == {100}
    writer = adapter.record_writer()
    assert writer.batch_size >= len(records)  # only the bytes split them
    with writer.open():
        writer.add_all(records)
    adapter.disconnect()
    assert writer.stats.inserted == len(records)
    with warehouse.tenant("ws-a", actor="test") as db:
        # each row's xmin is the transaction that wrote it: a batch is written once it
        # holds 250 bytes or more, so 3 + 3 + 3 + the last one
        sizes = db.execute(
            sa.text("SELECT count(*) FROM raw_records GROUP BY xmin::text ORDER BY 1 DESC")
        ).scalars()
        assert list(sizes) == [3, 3, 3, 1]


def test_a_byte_bound_needs_a_positive_bound_and_an_item_size(warehouse, workspace_a) -> None:
    context = _context(warehouse, "ws-a")
    for options in ({"max_batch_bytes": 100}, {"size": len}, {"max_batch_bytes": 0, "size": len}):
        with pytest.raises(ValueError, match="byte bound"):
            BatchWriter(context, write_raw_records, batch_size=2, **options)
