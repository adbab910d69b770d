"""A tenant-scoped session cannot touch the sessions of other workspaces.

Every attack runs as an attacker holding a session scoped to `ws-a` would (SQL in that
session, as `kpi_tenant`); then `ws-b`'s own work runs through the pipeline's real write
path and must go through unchanged: no signal reached it, no lock blocks it, no setting the
attacker gave the shared login changes how it runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pandas as pd
import psycopg
import pytest
import sqlalchemy as sa

from kpi_pipelines.models import KPIData
from kpi_pipelines.warehouse.database import (
    TENANT_ROLE,
    Warehouse,
    _role_engine,
    role_url,
    session_options,
)
from kpi_pipelines.warehouse.mart import write_mart
from kpi_pipelines.warehouse.tenant_data import load_cursor, save_cursor, set_override
from kpi_pipelines.warehouse.writer import write_kpis

NOW = datetime(2026, 1, 2, tzinfo=UTC)
TABLES = (
    "workspaces",
    "connections",
    "fx_rates",
    "raw_records",
    "kpi_data",
    "sync_state",
    "manual_overrides",
    "audit_log",
    "kpi_mart",
    "webhook_inbox",
)
BLOCKING_MODES = (
    "ROW SHARE",
    "ROW EXCLUSIVE",
    "SHARE UPDATE EXCLUSIVE",
    "SHARE",
    "SHARE ROW EXCLUSIVE",
    "EXCLUSIVE",
    "ACCESS EXCLUSIVE",
)


def _point(workspace_id: str, value: float) -> KPIData:
    return KPIData(
        value=value,
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        source="csv_upload",
        workspace_id=workspace_id,
        metric="signups",
    )


def _other_workspace_works(warehouse: Warehouse, value: float = 2.0) -> None:
    """ws-b's whole write path (points, cursor, override, mart) and its reads, each
    statement bounded so that a block fails the test instead of hanging it."""
    with warehouse.tenant("ws-b", actor="run:b") as db:
        db.execute(sa.text("SET LOCAL lock_timeout = '5s'"))
        stats = write_kpis(db, [_point("ws-b", value)], fetched_at=NOW)
        assert stats.written == 1
        save_cursor(db, "csv_upload", "files", {"value": value})
        frame = pd.DataFrame({"signups": [value]}, index=pd.Index([NOW.date()], name="day"))
        assert write_mart(db, frame) == 1
    set_override(warehouse, _point("ws-b", value + 1), user="b")
    with warehouse.tenant("ws-b", actor="run:b") as db:
        assert db.execute(sa.text("SELECT value FROM kpi_data")).scalar() == value + 1
        assert load_cursor(db, "csv_upload", "files") == {"value": value}
        assert db.execute(sa.text("SELECT count(*) FROM kpi_mart")).scalar() == 1


def _refused(session: sa.Connection, statement: str) -> Exception:
    """Run `statement` in its own savepoint of the attacker's session; the refusal."""
    with pytest.raises(sa.exc.DBAPIError) as raised, session.begin_nested():
        session.execute(sa.text(statement))
    return raised.value.orig


def test_a_tenant_session_cannot_signal_another_sessions_backend(
    warehouse: Warehouse, workspace_a, workspace_b
) -> None:
    with warehouse.tenant("ws-b", actor="run:b") as victim:
        pid = victim.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        with warehouse.tenant("ws-a", actor="run:attacker") as session:
            for signal in ("pg_terminate_backend", "pg_cancel_backend"):
                refusal = _refused(session, f"SELECT {signal}({pid})")
                assert isinstance(refusal, psycopg.errors.InsufficientPrivilege), signal
        # the victim's session and transaction are intact
        write_kpis(victim, [_point("ws-b", 3.0)], fetched_at=NOW)
    _other_workspace_works(warehouse)


def test_a_tenant_session_can_take_no_lock_that_blocks_another_session(
    warehouse: Warehouse, workspace_a, workspace_b
) -> None:
    with warehouse.tenant("ws-a", actor="run:attacker") as session:
        for table in TABLES:
            for mode in BLOCKING_MODES:
                refusal = _refused(session, f"LOCK TABLE kpi.{table} IN {mode} MODE")
                assert isinstance(refusal, psycopg.errors.InsufficientPrivilege), (table, mode)
        for table in ("kpi_data", "raw_records", "sync_state", "kpi_mart", "manual_overrides"):
            refusal = _refused(session, f"SELECT 1 FROM kpi.{table} FOR UPDATE")
            assert isinstance(refusal, psycopg.errors.InsufficientPrivilege), table
        # what it may hold (ACCESS SHARE on what it reads), it holds while ws-b works
        for table in TABLES[:-1]:
            session.execute(sa.text(f"SELECT count(*) FROM kpi.{table}"))
        _other_workspace_works(warehouse)


def test_a_tenant_session_cannot_take_the_migrations_lock_or_any_advisory_lock(
    warehouse: Warehouse, workspace_a, workspace_b
) -> None:
    from kpi_pipelines.warehouse.database import _MIGRATION_LOCK_KEY

    with warehouse.tenant("ws-a", actor="run:attacker") as session:
        for function in (
            "pg_advisory_lock",
            "pg_try_advisory_lock",
            "pg_advisory_xact_lock",
            "pg_advisory_lock_shared",
            "pg_try_advisory_xact_lock_shared",
        ):
            refusal = _refused(session, f"SELECT {function}({_MIGRATION_LOCK_KEY})")
            assert isinstance(refusal, psycopg.errors.InsufficientPrivilege), function
        refusal = _refused(session, "SELECT pg_advisory_lock(1, 2)")
        assert isinstance(refusal, psycopg.errors.InsufficientPrivilege)
        # a migration goes through while the attacker's transaction is open
        upgrade = threading.Thread(target=warehouse.upgrade)
        upgrade.start()
        upgrade.join(timeout=60)
        assert not upgrade.is_alive()
    _other_workspace_works(warehouse)


def test_a_tenant_session_cannot_read_other_sessions_queries(
    warehouse: Warehouse, workspace_a, workspace_b
) -> None:
    with (
        warehouse.tenant("ws-b", actor="run:b") as victim,
        warehouse.tenant("ws-a", actor="run:attacker") as session,
    ):
        pid = victim.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        for statement in (
            "SELECT query FROM pg_stat_activity",
            "SELECT query FROM pg_catalog.pg_stat_get_activity(NULL)",
            f"SELECT pg_stat_get_backend_activity(b) FROM pg_stat_get_backend_idset() b"
            f" WHERE pg_stat_get_backend_pid(b) = {pid}",
        ):
            refusal = _refused(session, statement)
            assert isinstance(refusal, psycopg.errors.InsufficientPrivilege), statement
    assert warehouse.tenant_session_powers() == []


@pytest.fixture
def clean_role_settings(warehouse: Warehouse) -> Iterator[None]:
    yield
    with warehouse.engine(None).begin() as admin:
        admin.execute(sa.text(f"ALTER ROLE {TENANT_ROLE} RESET ALL"))
    warehouse.engine(TENANT_ROLE).dispose()


# What a session may make the defaults of its own login, and what each would do to every
# later session of every workspace if it took effect.
ROLE_DEFAULTS = {
    "default_transaction_read_only": "on",  # every write fails
    "statement_timeout": "1",  # every statement fails
    "lock_timeout": "1",
    "idle_in_transaction_session_timeout": "1",  # every transaction is cut off
    "search_path": "pg_temp, kpi",  # temporary tables stand in for ours
    "row_security": "off",  # every read of a tenant table fails
    "TimeZone": "Pacific/Kiritimati",  # every day is cut elsewhere
    "extra_float_digits": "-15",  # every value read back is rounded
    "default_transaction_isolation": "serializable",
    "work_mem": "64",  # not pinned: set back to the server's own value
    "enable_indexscan": "off",
}


def test_defaults_a_session_gives_its_role_reach_no_other_session(
    warehouse: Warehouse, workspace_a, workspace_b, clean_role_settings, caplog
) -> None:
    with warehouse.tenant("ws-a", actor="run:attacker") as session:
        for name, value in ROLE_DEFAULTS.items():
            session.execute(sa.text(f"ALTER ROLE {TENANT_ROLE} SET {name} = '{value}'"))
    with warehouse.engine(None).connect() as admin:
        stored = admin.execute(
            sa.text(
                "SELECT count(*) FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole"
                " WHERE r.rolname = :role"
            ),
            {"role": TENANT_ROLE},
        ).scalar()
    assert stored == 1  # PostgreSQL lets it: they are there for every new session
    warehouse.engine(TENANT_ROLE).dispose()  # every later session is a new one
    caplog.set_level(logging.WARNING, logger="kpi_pipelines.warehouse")
    for _ in range(2):  # a new session, then one back from the pool (DISCARD ALL)
        _other_workspace_works(warehouse, value=0.1 + 0.2)
        with warehouse.tenant("ws-b", actor="run:b") as db:
            shown = {
                name: db.execute(sa.text("SELECT current_setting(:n)"), {"n": name}).scalar()
                for name in ROLE_DEFAULTS
            }
            value = db.execute(sa.text("SELECT value FROM kpi_data")).scalar()
    pinned = session_options(TENANT_ROLE)
    assert shown["default_transaction_read_only"] == "off"
    assert shown["statement_timeout"] != "1ms" and shown["lock_timeout"] != "1ms"
    assert shown["search_path"] == pinned["search_path"]
    assert shown["row_security"] == "on"
    assert shown["TimeZone"] == "UTC"
    assert shown["default_transaction_isolation"] == "read committed"
    assert shown["work_mem"] != "64kB" and shown["enable_indexscan"] == "on"
    assert value == 0.1 + 0.2 + 1  # read back to the last bit
    warned = {
        r.getMessage().split(" has its own default for ")[1].split(" ")[0] for r in caplog.records
    }
    assert {"work_mem", "enable_indexscan"} <= warned
    # `db upgrade` removes them
    warehouse.upgrade()
    with warehouse.engine(None).connect() as admin:
        assert (
            admin.execute(
                sa.text(
                    "SELECT count(*) FROM pg_db_role_setting s"
                    " JOIN pg_roles r ON r.oid = s.setrole WHERE r.rolname = :role"
                ),
                {"role": TENANT_ROLE},
            ).scalar()
            == 0
        )


def test_every_pipeline_session_runs_with_bounded_timeouts(
    warehouse: Warehouse, workspace_a, monkeypatch
) -> None:
    with warehouse.tenant("ws-a", actor="test") as db:
        shown = {
            name: db.execute(sa.text(f"SHOW {name}")).scalar()
            for name in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")
        }
    assert shown == {
        "statement_timeout": "15min",
        "lock_timeout": "1min",
        "idle_in_transaction_session_timeout": "10min",
    }
    # A session that holds a transaction open and idle is ended by the server, with what it
    # held; one that waits on a lock gives up.
    monkeypatch.setenv("KPI_DB_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS", "0.5")
    monkeypatch.setenv("KPI_DB_LOCK_TIMEOUT_SECONDS", "0.5")
    engine = _role_engine(role_url(warehouse.admin_url, TENANT_ROLE), TENANT_ROLE)
    try:
        with engine.connect() as idle:
            idle.execute(sa.text("SELECT 1"))  # a transaction begins, then nothing comes
            time.sleep(2)
            with pytest.raises(sa.exc.DBAPIError) as ended:
                idle.execute(sa.text("SELECT 1"))
            assert isinstance(ended.value.orig, psycopg.errors.IdleInTransactionSessionTimeout)
        with warehouse.engine(None).connect() as admin, engine.connect() as waiting:
            admin.execute(sa.text("LOCK TABLE kpi.workspaces IN ACCESS EXCLUSIVE MODE"))
            with pytest.raises(sa.exc.OperationalError) as raised:
                waiting.execute(sa.text("SELECT count(*) FROM kpi.workspaces"))
            assert isinstance(raised.value.orig, psycopg.errors.LockNotAvailable)
    finally:
        engine.dispose()


@pytest.fixture
def tenant_password_restored(warehouse: Warehouse) -> Iterator[None]:
    yield
    from psycopg import sql

    from kpi_pipelines import settings

    with warehouse.engine(None).begin() as admin:
        driver = admin.connection.driver_connection
        assert isinstance(driver, psycopg.Connection)
        driver.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(TENANT_ROLE), sql.Literal(settings.role_password(TENANT_ROLE))
            )
        )


def test_a_tenant_session_changing_its_logins_password_leaves_the_embedded_server_working(
    warehouse: Warehouse, workspace_a, workspace_b, tenant_password_restored
) -> None:
    """PostgreSQL lets every login change its own password, and no privilege stops it: on the
    embedded server (local trust) and with certificate or peer authentication it changes
    nothing; with password authentication `db upgrade` sets it back (test_bootstrap_roles)."""
    with warehouse.tenant("ws-a", actor="run:attacker") as session:
        session.execute(sa.text(f"ALTER ROLE {TENANT_ROLE} PASSWORD 'mallory'"))
    warehouse.engine(TENANT_ROLE).dispose()
    _other_workspace_works(warehouse)
