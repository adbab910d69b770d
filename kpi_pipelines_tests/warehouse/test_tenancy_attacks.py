"""Ways around row-level security, tried as an attacker holding a tenant-scoped session would.

The policies themselves are tested in test_row_level_security.py; these tests go around them:
temporary tables that shadow what owner-run code writes, leftovers on pooled connections,
role switches, a self-declared audit actor, and rewriting a connection's secrets.
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
import sqlalchemy as sa

from kpi_pipelines.models import KPIData
from kpi_pipelines.warehouse.database import OWNER_ROLE, SEARCH_PATH, TENANT_ROLE, Warehouse
from kpi_pipelines.warehouse.writer import write_kpis

NOW = datetime(2026, 1, 2, tzinfo=UTC)
POOLED = 4  # the tenant engine's pool_size: poison every connection it keeps


def _point(workspace_id: str, value: float = 1.0, metric: str = "signups") -> KPIData:
    return KPIData(
        value=value,
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        source="csv_upload",
        workspace_id=workspace_id,
        metric=metric,
    )


def _audit(warehouse: Warehouse) -> list[tuple]:
    with warehouse.engine(None).connect() as db:
        return [
            tuple(r)
            for r in db.execute(
                sa.text("SELECT workspace_id, metric, action, new_value, actor FROM kpi.audit_log")
            )
        ]


def _privileges(warehouse: Warehouse) -> dict[str, object]:
    """What an escalation would change: RLS switches, policies, grants, memberships."""
    with warehouse.engine(None).connect() as db:
        return {
            "force_rls": sorted(
                db.execute(
                    sa.text(
                        "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class"
                        " WHERE relnamespace = 'kpi'::regnamespace AND relkind = 'r'"
                    )
                ).all()
            ),
            "policies": sorted(
                db.execute(
                    sa.text(
                        "SELECT tablename, policyname, qual FROM pg_policies WHERE schemaname = 'kpi'"
                    )
                ).all()
            ),
            "grants": sorted(
                db.execute(
                    sa.text(
                        "SELECT grantee, table_name, privilege_type FROM information_schema.role_table_grants"
                        " WHERE table_schema = 'kpi'"
                    )
                ).all()
            ),
            "memberships": sorted(
                db.execute(
                    sa.text(
                        "SELECT r.rolname, m.rolname FROM pg_auth_members a"
                        " JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member"
                    )
                ).all()
            ),
        }


SHADOWS = ("audit_log", "manual_overrides", "inserted_rows", "new_rows", "old_rows")


def test_temp_tables_named_like_audit_tables_capture_nothing_and_run_nothing_as_owner(
    warehouse: Warehouse, workspace_a
) -> None:
    before = _privileges(warehouse)
    with warehouse.tenant("ws-a", actor="run:attacker") as db:
        db.execute(sa.text("CREATE TEMP TABLE captured (what text)"))
        # Run as whoever fires it: as the owner, inside a SECURITY DEFINER audit function.
        db.execute(
            sa.text(
                "CREATE FUNCTION pg_temp.escalate() RETURNS trigger LANGUAGE plpgsql AS $$"
                " BEGIN"
                "   INSERT INTO pg_temp.captured VALUES (current_user);"
                "   EXECUTE 'ALTER TABLE kpi.kpi_data NO FORCE ROW LEVEL SECURITY';"
                "   EXECUTE 'GRANT kpi_owner TO kpi_tenant';"
                "   RETURN NULL;"
                " END $$"
            )
        )
        for name in SHADOWS:
            db.execute(sa.text(f"CREATE TEMP TABLE {name} (LIKE kpi.audit_log)"))
            db.execute(
                sa.text(
                    f"CREATE TRIGGER capture AFTER INSERT OR UPDATE ON pg_temp.{name}"
                    " FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.escalate()"
                )
            )
        write_kpis(db, [_point("ws-a", 1.0)], fetched_at=NOW)
        write_kpis(db, [_point("ws-a", 2.0)], fetched_at=NOW.replace(day=3))
        captured = db.execute(sa.text("SELECT count(*) FROM pg_temp.captured")).scalar()
        shadowed = {
            name: db.execute(sa.text(f"SELECT count(*) FROM pg_temp.{name}")).scalar()
            for name in SHADOWS
        }
    assert captured == 0
    assert shadowed == dict.fromkeys(SHADOWS, 0)
    assert _audit(warehouse) == [
        ("ws-a", "signups", "insert", 1.0, "run:attacker"),
        ("ws-a", "signups", "update", 2.0, "run:attacker"),
    ]
    assert _privileges(warehouse) == before


def test_reset_role_in_a_tenant_session_is_still_the_tenant(
    warehouse: Warehouse, workspace_a
) -> None:
    with warehouse.tenant("ws-a", actor="test") as db:
        db.execute(sa.text("RESET ROLE"))
        who = db.execute(
            sa.text(
                "SELECT current_user, session_user, r.rolsuper, r.rolbypassrls FROM pg_roles r"
                " WHERE r.rolname = current_user"
            )
        ).one()
    assert tuple(who) == (TENANT_ROLE, TENANT_ROLE, False, False)
    with (
        pytest.raises(sa.exc.ProgrammingError) as raised,
        warehouse.tenant("ws-a", actor="test") as db,
    ):
        db.execute(sa.text(f"SET ROLE {OWNER_ROLE}"))
    assert isinstance(raised.value.orig, psycopg.errors.InsufficientPrivilege)


def test_every_login_role_is_its_own_unprivileged_login(warehouse: Warehouse) -> None:
    for role in ("kpi_owner", "kpi_tenant", "kpi_control"):
        with warehouse.engine(role).connect() as db:
            assert db.execute(sa.text("SELECT session_user")).scalar() == role
    with warehouse.engine(None).connect() as db:
        rows = db.execute(
            sa.text(
                "SELECT rolname, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolcanlogin,"
                " (SELECT count(*) FROM pg_auth_members m WHERE m.member = r.oid) AS member_of"
                " FROM pg_roles r WHERE rolname LIKE 'kpi\\_%'"
            )
        ).all()
    assert {r.rolname: tuple(r)[1:] for r in rows} == {
        role: (False, False, False, False, True, 0)
        for role in ("kpi_owner", "kpi_tenant", "kpi_control")
    }


def _poison_every_pooled_connection(warehouse: Warehouse) -> None:
    """What a hostile transaction could leave behind on its connection, on each one."""
    engine = warehouse.engine(TENANT_ROLE)
    held = [engine.connect() for _ in range(POOLED)]
    for db in held:
        with db.begin():
            db.execute(sa.text("SELECT set_config('kpi.workspace_id', 'ws-a', false)"))
            db.execute(sa.text("SELECT set_config('kpi.actor', 'user:mallory', false)"))
            db.execute(sa.text("SET search_path = pg_temp, kpi, pg_catalog"))
            db.execute(sa.text("CREATE TEMP TABLE kpi_data (LIKE kpi.kpi_data INCLUDING DEFAULTS)"))
            db.execute(
                sa.text(
                    'INSERT INTO pg_temp.kpi_data (workspace_id, source, metric, "timestamp",'
                    " value, source_ts, origin, changed_by)"
                    " VALUES ('ws-b', 'csv_upload', 'planted', now(), 666, now(), 'sync', 'x')"
                )
            )
            db.execute(sa.text("RESET ROLE"))
    for db in held:
        db.close()


def test_nothing_a_transaction_sets_survives_on_its_pooled_connection(
    warehouse: Warehouse, workspace_a, workspace_b
) -> None:
    with warehouse.tenant("ws-a", actor="run:a") as db:
        write_kpis(db, [_point("ws-a", 1.0)], fetched_at=NOW)
    with warehouse.tenant("ws-b", actor="run:b") as db:
        write_kpis(db, [_point("ws-b", 2.0)], fetched_at=NOW)
    _poison_every_pooled_connection(warehouse)
    for _ in range(POOLED):
        with warehouse.tenant("ws-b", actor="run:b") as db:
            seen = db.execute(sa.text("SELECT workspace_id, metric, value FROM kpi_data")).all()
            setting = db.execute(sa.text("SHOW search_path")).scalar()
            temp = db.execute(
                sa.text("SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()")
            ).scalar()
        assert [tuple(r) for r in seen] == [("ws-b", "signups", 2.0)]
        assert setting == SEARCH_PATH.replace(" ", "")
        assert temp == 0
        with warehouse.unscoped_tenant() as db:
            assert db.execute(sa.text("SELECT count(*) FROM kpi_data")).scalar() == 0
            assert db.execute(sa.text("SELECT current_setting('kpi.actor', true)")).scalar() in (
                None,
                "",
            )


def test_the_audit_actor_is_the_transactions_not_a_column_the_writer_sets(
    warehouse: Warehouse, workspace_a
) -> None:
    forged = (
        'INSERT INTO kpi_data (workspace_id, source, metric, "timestamp", value, source_ts,'
        " origin, changed_by) VALUES ('ws-a', 'csv_upload', 'signups', now(), 1, now(), 'sync',"
        " 'user:someone-else')"
    )
    with (
        pytest.raises(sa.exc.ProgrammingError, match="transaction's actor"),
        warehouse.tenant("ws-a", actor="run:honest") as db,
    ):
        db.execute(sa.text(forged))
    with (
        pytest.raises(sa.exc.ProgrammingError, match=r"kpi\.actor"),
        warehouse.unscoped_tenant() as db,
    ):
        db.execute(sa.text("SELECT set_config('kpi.workspace_id', 'ws-a', true)"))
        db.execute(sa.text(forged.replace("'user:someone-else'", "'run:1'")))
    with warehouse.tenant("ws-a", actor="run:honest") as db:
        write_kpis(db, [_point("ws-a")], fetched_at=NOW)
        stored = db.execute(sa.text("SELECT changed_by FROM kpi_data")).scalar()
    assert stored == "run:honest"
    assert _audit(warehouse) == [("ws-a", "signups", "insert", 1.0, "run:honest")]


@pytest.mark.parametrize(
    "assignment",
    [
        'secret_env = \'{"api_key": "WS_WS_B__STRIPE_KEY"}\'',
        'settings = \'{"base_url": "http://attacker.example"}\'',
        "provider = 'stripe'",
        "enabled = true",
        "workspace_id = 'ws-b'",
    ],
)
def test_tenant_updates_only_the_health_columns_of_its_connections(
    warehouse: Warehouse, workspace_a, assignment: str
) -> None:
    from kpi_pipelines.warehouse.control import Connection, add_connection

    add_connection(
        warehouse,
        Connection(
            workspace_id="ws-a", provider="stripe", secret_env={"api_key": "WS_WS_A__STRIPE_KEY"}
        ),
    )
    with (
        pytest.raises(sa.exc.ProgrammingError) as raised,
        warehouse.tenant("ws-a", actor="test") as db,
    ):
        db.execute(sa.text(f"UPDATE connections SET {assignment}"))
    assert isinstance(raised.value.orig, psycopg.errors.InsufficientPrivilege)
    with warehouse.tenant("ws-a", actor="test") as db:
        updated = db.execute(
            sa.text("UPDATE connections SET last_error = 'x', consecutive_failures = 1")
        )
        assert updated.rowcount == 1


def test_a_lost_connection_is_told_apart_from_a_refused_statement(
    warehouse: Warehouse, workspace_a
) -> None:
    from kpi_pipelines.warehouse.database import connection_lost

    # The server refuses a statement (a limit, an OperationalError too): not a lost connection.
    with (
        pytest.raises(psycopg.errors.ProgramLimitExceeded) as limit,
        warehouse.engine(None).connect() as db,
    ):
        driver = db.connection.driver_connection
        assert driver is not None
        driver.execute("CREATE TEMP TABLE t (k text PRIMARY KEY)")
        driver.execute(
            "INSERT INTO t SELECT string_agg(md5(i::text), '') FROM generate_series(1, 300) i"
        )
    assert not connection_lost(limit.value)
    # The server ends the session (a restart, an administrator): lost.
    with warehouse.engine(TENANT_ROLE).connect() as db:
        pid = db.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        with warehouse.engine(None).connect() as admin:
            admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(sa.exc.OperationalError) as lost:
            db.execute(sa.text("SELECT 1"))
    assert connection_lost(lost.value)
