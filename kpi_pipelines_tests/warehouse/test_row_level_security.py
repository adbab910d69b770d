"""Row-level security proven through the pipeline's own role (kpi_tenant), not by our code."""

from datetime import UTC, datetime

import psycopg
import pytest
import sqlalchemy as sa

from kpi_pipelines.models import KPIData
from kpi_pipelines.warehouse.database import CONTROL_ROLE, OWNER_ROLE, TENANT_ROLE, Warehouse
from kpi_pipelines.warehouse.writer import write_kpis

NOW = datetime(2026, 1, 2, tzinfo=UTC)


def _point(workspace_id: str, value: float = 1.0) -> KPIData:
    return KPIData(
        value=value,
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        source="csv_upload",
        workspace_id=workspace_id,
        metric="signups",
    )


def _seed(warehouse: Warehouse, workspace_id: str) -> None:
    with warehouse.tenant(workspace_id, actor="test") as db:
        write_kpis(db, [_point(workspace_id)], fetched_at=NOW)


def _insert_raw_sql(db: sa.Connection, workspace_id: str) -> None:
    db.execute(
        sa.text(
            'INSERT INTO kpi_data (workspace_id, source, metric, "timestamp", value, source_ts,'
            " origin, changed_by) VALUES (:ws, 'csv_upload', 'signups', now(), 1, now(), 'sync', 'x')"
        ),
        {"ws": workspace_id},
    )


def _merge_staged(db: sa.Connection, workspace_id: str, value: float = 9.0) -> None:
    """The write path's own steps with a row the Python writer would refuse: whatever a
    tenant session puts in the staging table, the owner's merge is held to its scope."""
    db.execute(sa.text("SELECT kpi.open_kpi_stage()"))
    db.execute(
        sa.text(
            'INSERT INTO pg_temp.kpi_stage (workspace_id, source, metric, "timestamp",'
            " dimensions_key, dimensions, value, metadata, source_ts)"
            " VALUES (:ws, 'csv_upload', 'signups', '2026-01-01T00:00:00Z', '', '{}', :value,"
            " '{}', now())"
        ),
        {"ws": workspace_id, "value": value},
    )
    db.execute(sa.text("SELECT * FROM kpi.merge_kpi_stage()"))


def test_roles_are_neither_superuser_nor_bypass_rls(warehouse: Warehouse) -> None:
    with warehouse.engine(None).connect() as db:
        rows = db.execute(
            sa.text("SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = ANY(:r)"),
            {"r": [OWNER_ROLE, TENANT_ROLE, CONTROL_ROLE]},
        ).all()
    assert sorted(r.rolname for r in rows) == sorted([OWNER_ROLE, TENANT_ROLE, CONTROL_ROLE])
    assert all(not r.rolsuper and not r.rolbypassrls for r in rows)


def test_tenant_tables_force_row_level_security(warehouse: Warehouse) -> None:
    with warehouse.engine(None).connect() as db:
        rows = db.execute(
            sa.text(
                "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class"
                " WHERE relnamespace = 'kpi'::regnamespace AND relkind = 'r'"
                " AND relname IN ('raw_records', 'kpi_data', 'sync_state', 'manual_overrides',"
                " 'audit_log', 'workspaces', 'connections', 'webhook_inbox', 'kpi_mart',"
                " 'oauth_grants', 'notes')"
            )
        ).all()
    assert len(rows) == 11
    assert all(r.relrowsecurity and r.relforcerowsecurity for r in rows)


def test_pipeline_connections_act_as_the_tenant_role(warehouse: Warehouse, workspace_a) -> None:
    with warehouse.tenant("ws-a", actor="test") as db:
        assert db.execute(sa.text("SELECT current_user")).scalar() == TENANT_ROLE


def test_scoped_transaction_cannot_read_another_workspace(
    warehouse: Warehouse, workspace_a, workspace_b
) -> None:
    _seed(warehouse, "ws-a")
    _seed(warehouse, "ws-b")
    with warehouse.tenant("ws-a", actor="test") as db:
        seen = db.execute(sa.text("SELECT DISTINCT workspace_id FROM kpi_data")).scalars().all()
        audit = db.execute(sa.text("SELECT DISTINCT workspace_id FROM audit_log")).scalars().all()
        workspaces = db.execute(sa.text("SELECT id FROM workspaces")).scalars().all()
    assert seen == ["ws-a"]
    assert audit == ["ws-a"]
    assert workspaces == ["ws-a"]


def test_scoped_transaction_cannot_write_another_workspace(
    warehouse: Warehouse, workspace_a, workspace_b
) -> None:
    with (
        pytest.raises(sa.exc.ProgrammingError) as raised,
        warehouse.tenant("ws-a", actor="test") as db,
    ):
        _merge_staged(db, "ws-b")
    assert isinstance(raised.value.orig, psycopg.errors.InsufficientPrivilege)
    assert "row-level security" in str(raised.value.orig)


def test_scoped_transaction_cannot_update_another_workspace(
    warehouse: Warehouse, workspace_a, workspace_b
) -> None:
    _seed(warehouse, "ws-b")
    with (
        pytest.raises(sa.exc.ProgrammingError, match="row-level security"),
        warehouse.tenant("ws-a", actor="test") as db,
    ):
        _merge_staged(db, "ws-b", value=99.0)
    with warehouse.tenant("ws-a", actor="test") as db:
        changed = db.execute(sa.text("SELECT count(*) FROM kpi_data WHERE workspace_id = 'ws-b'"))
        assert changed.scalar() == 0
    with warehouse.tenant("ws-b", actor="test") as db:
        assert db.execute(sa.text("SELECT value FROM kpi_data")).scalar() == 1.0


def test_the_tenant_role_writes_shared_tables_only_through_the_owners_functions(
    warehouse: Warehouse, workspace_a
) -> None:
    """No INSERT, UPDATE or DELETE of its own: a tenant session's writes are the write
    path's (and it can take no lock that blocks another session: test_session_isolation)."""
    statements = [
        'INSERT INTO kpi_data (workspace_id, source, metric, "timestamp", value, source_ts,'
        " origin, changed_by) VALUES ('ws-a', 'csv_upload', 'signups', now(), 1, now(), 'sync',"
        " 'test')",
        "UPDATE kpi_data SET value = 2",
        "DELETE FROM raw_records",
        "UPDATE sync_state SET cursor = '{}'",
        "DELETE FROM kpi_mart",
        "UPDATE manual_overrides SET value = 2",
    ]
    for statement in statements:
        with (
            pytest.raises(sa.exc.ProgrammingError) as raised,
            warehouse.tenant("ws-a", actor="test") as db,
        ):
            db.execute(sa.text(statement))
        assert isinstance(raised.value.orig, psycopg.errors.InsufficientPrivilege), statement


def test_unscoped_transaction_sees_nothing_and_writes_nothing(
    warehouse: Warehouse, workspace_a
) -> None:
    _seed(warehouse, "ws-a")
    with warehouse.unscoped_tenant() as db:
        for table in ("kpi_data", "raw_records", "audit_log", "workspaces", "connections"):
            assert db.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() == 0
    with pytest.raises(sa.exc.ProgrammingError), warehouse.unscoped_tenant() as db:
        _insert_raw_sql(db, "ws-a")
    with (
        pytest.raises(sa.exc.ProgrammingError, match="scoped by the write path"),
        warehouse.unscoped_tenant() as db,
    ):
        _merge_staged(db, "ws-a")


def test_write_path_refuses_a_point_for_another_workspace(
    warehouse: Warehouse, workspace_a, workspace_b
) -> None:
    from kpi_pipelines.warehouse.database import WorkspaceScopeError

    with (
        pytest.raises(WorkspaceScopeError, match="'ws-b' in a run for workspace 'ws-a'"),
        warehouse.tenant("ws-a", actor="test") as db,
    ):
        write_kpis(db, [_point("ws-b")], fetched_at=NOW)


def test_control_role_reads_control_plane_but_no_tenant_data(
    warehouse: Warehouse, workspace_a, workspace_b
) -> None:
    _seed(warehouse, "ws-a")
    with warehouse.control() as db:
        assert sorted(db.execute(sa.text("SELECT id FROM workspaces")).scalars()) == [
            "ws-a",
            "ws-b",
        ]
    with pytest.raises(sa.exc.ProgrammingError) as raised, warehouse.control() as db:
        db.execute(sa.text("SELECT count(*) FROM kpi_data"))
    assert isinstance(raised.value.orig, psycopg.errors.InsufficientPrivilege)


def test_tenant_cannot_write_the_audit_log_directly(warehouse: Warehouse, workspace_a) -> None:
    with pytest.raises(sa.exc.ProgrammingError), warehouse.tenant("ws-a", actor="test") as db:
        db.execute(
            sa.text(
                'INSERT INTO audit_log (workspace_id, source, metric, "timestamp", dimensions_key,'
                " action, actor) VALUES ('ws-a', 's', 'm', now(), '', 'insert', 'forged')"
            )
        )
