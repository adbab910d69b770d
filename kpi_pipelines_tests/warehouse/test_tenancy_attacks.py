"""Ways around row-level security, tried as an attacker holding a tenant-scoped session would.

The policies themselves are tested in test_row_level_security.py; these tests go around them:
temporary tables that shadow what owner-run code writes, leftovers on pooled connections,
role switches, a self-declared audit actor, and rewriting a connection's secrets.
"""

from __future__ import annotations

import dataclasses
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


# Every relation the owner's SECURITY DEFINER functions touch, and the transition tables of
# the audit triggers: a tenant's temporary table of that name must never stand in for it.
SHADOWS = (
    "audit_log",
    "manual_overrides",
    "kpi_data",
    "raw_records",
    "sync_state",
    "kpi_mart",
    "scope_key",
    "workspaces",
    "connections",
    "oauth_grants",
    "inserted_rows",
    "new_rows",
    "old_rows",
)
# What runs if the owner ever reads or writes one of them: it records who ran it, and (in
# the real attack) tries to turn row-level security off and to become the owner.
CAPTURE = "INSERT INTO pg_temp.captured VALUES (current_user);"
ESCALATE = (
    CAPTURE + " EXECUTE 'ALTER TABLE kpi.kpi_data NO FORCE ROW LEVEL SECURITY';"
    " EXECUTE 'GRANT kpi_owner TO kpi_tenant';"
)


def _attack_with_shadow_tables(warehouse: Warehouse, payload: str) -> tuple[list, dict]:
    """Every write path's function, called from a tenant session that searches its own
    temporary schema first and holds a temporary table (with a trigger and a rule running
    `payload`) named like each relation they use. Returns who ran the payload, and what the
    shadows received."""
    from kpi_pipelines.warehouse.control import Connection, add_connection
    from kpi_pipelines.warehouse.grants import (
        grant_for_update,
        grants_for_update,
        replace_grant,
        store_grant,
    )
    from kpi_pipelines.warehouse.mart import write_mart
    from kpi_pipelines.warehouse.tenant_data import save_cursor
    from kpi_pipelines.warehouse.writer import RawRecord, write_raw_records

    connection = add_connection(warehouse, Connection(workspace_id="ws-a", provider="stripe"))
    assert connection.id is not None
    with warehouse.tenant("ws-a", actor="run:attacker") as db:
        db.execute(sa.text("CREATE TEMP TABLE captured (what text)"))
        db.execute(sa.text("GRANT ALL ON pg_temp.captured TO PUBLIC"))
        db.execute(
            sa.text(
                "CREATE FUNCTION pg_temp.escalate() RETURNS trigger LANGUAGE plpgsql AS $$"
                f" BEGIN {payload} RETURN NULL; END $$"
            )
        )
        for name in SHADOWS:
            # no constraints: it accepts whatever the owner's code would write to it
            db.execute(sa.text(f"CREATE TEMP TABLE {name} AS TABLE kpi.audit_log WITH NO DATA"))
            db.execute(sa.text(f"ALTER TABLE pg_temp.{name} ADD COLUMN key bytea"))
            # whoever writes them may (the owner's code runs as the owner)
            db.execute(sa.text(f"GRANT ALL ON pg_temp.{name} TO PUBLIC"))
            db.execute(
                sa.text(
                    f"CREATE TRIGGER capture AFTER INSERT OR UPDATE OR DELETE ON pg_temp.{name}"
                    " FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.escalate()"
                )
            )
        # An unqualified name in code run as the owner would now find these first.
        db.execute(sa.text("SET LOCAL search_path = pg_temp, kpi, pg_catalog"))
        write_kpis(db, [_point("ws-a", 1.0)], fetched_at=NOW)
        write_kpis(db, [_point("ws-a", 2.0)], fetched_at=NOW.replace(day=3))
        write_raw_records(db, "csv_upload", [RawRecord("s", "r1", {"a": 1})], fetched_at=NOW)
        save_cursor(db, "csv_upload", "s", {"at": 1})
        db.execute(
            sa.text(
                "SELECT kpi.set_override('csv_upload', 'signups', '2026-01-01T00:00:00Z', '',"
                " '{}', 5, '{}', 'x')"
            )
        )
        write_mart(db, _mart_frame())
        store_grant(db, connection.id, b"sealed")
        held = grant_for_update(db, connection.id)
        assert held is not None and grants_for_update(db) == [
            dataclasses.replace(held, provider="stripe")
        ]
        replace_grant(db, connection.id, b"resealed", held.version)
        captured = db.execute(sa.text("SELECT what FROM pg_temp.captured")).scalars().all()
        shadowed = {
            name: db.execute(sa.text(f"SELECT count(*) FROM pg_temp.{name}")).scalar()
            for name in SHADOWS
        }
    return captured, shadowed


def _mart_frame():  # type: ignore[no-untyped-def]
    import pandas as pd

    return pd.DataFrame({"signups": [5.0]}, index=pd.Index([NOW.date()], name="day"))


def test_temp_tables_named_like_ours_capture_nothing_and_run_nothing_as_owner(
    warehouse: Warehouse, workspace_a
) -> None:
    before = _privileges(warehouse)
    captured, shadowed = _attack_with_shadow_tables(warehouse, ESCALATE)
    assert captured == []
    assert shadowed == dict.fromkeys(SHADOWS, 0)
    assert _audit(warehouse) == [
        ("ws-a", "signups", "insert", 1.0, "run:attacker"),
        ("ws-a", "signups", "update", 2.0, "run:attacker"),
        ("ws-a", "signups", "override", 5.0, "run:attacker"),
    ]
    assert _privileges(warehouse) == before


def test_the_shadow_table_attack_catches_a_definer_function_left_unpinned(
    warehouse: Warehouse, workspace_a
) -> None:
    """The attack above has teeth: an audit function without its pinned search_path and
    its schema-qualified names (as 0001 first wrote it) runs the tenant's code as the owner."""
    with warehouse.engine(None).connect() as db:
        real = db.execute(
            sa.text("SELECT pg_get_functiondef('kpi.audit_kpi_insert()'::regprocedure)")
        ).scalar_one()
    weakened = real.replace(" SET search_path TO 'pg_catalog', 'pg_temp'", "").replace(
        "INSERT INTO kpi.audit_log", "INSERT INTO audit_log"
    )
    assert weakened != real and "search_path" not in weakened
    try:
        with warehouse.engine(None).begin() as db:
            db.execute(sa.text(weakened))
        captured, shadowed = _attack_with_shadow_tables(warehouse, CAPTURE)
    finally:
        with warehouse.engine(None).begin() as db:
            db.execute(sa.text(real))
    # every audited write went to the tenant's table, whose trigger ran as the owner
    assert captured and set(captured) == {OWNER_ROLE}
    assert shadowed["audit_log"] == 1  # the one insert it audited


def test_a_staging_table_the_tenant_made_is_never_read_by_the_owner(
    warehouse: Warehouse, workspace_a
) -> None:
    """A tenant's own `pg_temp.kpi_stage` could carry a policy, a rule or a view that runs
    its code as whoever reads it: the merge refuses to read a stage it did not make."""
    for stage, merge in (
        ("kpi_stage", "SELECT * FROM kpi.merge_kpi_stage()"),
        ("raw_stage", "SELECT kpi.merge_raw_stage(now())"),
    ):
        with (
            pytest.raises(sa.exc.ProgrammingError, match=f"pg_temp.{stage} is not"),
            warehouse.tenant("ws-a", actor="run:attacker") as db,
        ):
            db.execute(sa.text("CREATE TEMP TABLE captured (what text)"))
            db.execute(
                sa.text(
                    "CREATE FUNCTION pg_temp.leak() RETURNS boolean LANGUAGE plpgsql AS $$"
                    f" BEGIN {CAPTURE} RETURN true; END $$"
                )
            )
            db.execute(sa.text(f"CREATE TEMP TABLE {stage} (LIKE kpi.kpi_data)"))
            db.execute(sa.text(f"ALTER TABLE pg_temp.{stage} ENABLE ROW LEVEL SECURITY"))
            db.execute(sa.text(f"CREATE POLICY p ON pg_temp.{stage} USING (pg_temp.leak())"))
            db.execute(sa.text(merge))
        with (
            pytest.raises(sa.exc.ProgrammingError, match=f"pg_temp.{stage} is not"),
            warehouse.tenant("ws-a", actor="run:attacker") as db,
        ):
            db.execute(sa.text(f"CREATE TEMP TABLE {stage} (LIKE kpi.kpi_data)"))
            db.execute(sa.text(f"SELECT kpi.open_{stage}()"))


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
    with warehouse.tenant("ws-a", actor="run:honest") as db:
        write_kpis(db, [_point("ws-a")], fetched_at=NOW)
        stored = db.execute(sa.text("SELECT changed_by FROM kpi_data")).scalar()
    assert stored == "run:honest"
    assert _audit(warehouse) == [("ws-a", "signups", "insert", 1.0, "run:honest")]


@pytest.mark.parametrize(
    ("setting", "value"),
    [("kpi.actor", "user:someone-else"), ("kpi.workspace_id", "ws-b")],
)
def test_a_session_cannot_choose_its_actor_or_its_workspace(
    warehouse: Warehouse, workspace_a, workspace_b, setting: str, value: str
) -> None:
    """The scope is proved (an HMAC over it and the transaction, under a key only the owner
    reads): a session that sets its actor or workspace itself, in its own transaction or in
    a new one, sees no tenant row and can write none."""
    with warehouse.tenant("ws-b", actor="run:b") as db:
        write_kpis(db, [_point("ws-b", 2.0)], fetched_at=NOW)
    with (
        pytest.raises(sa.exc.ProgrammingError, match="scoped by the write path"),
        warehouse.tenant("ws-a", actor="run:honest") as db,
    ):
        db.execute(
            sa.text("SELECT set_config(:name, :value, true)"), {"name": setting, "value": value}
        )
        assert db.execute(sa.text("SELECT count(*) FROM kpi_data")).scalar() == 0
        assert db.execute(sa.text("SELECT count(*) FROM workspaces")).scalar() == 0
        db.execute(sa.text("SELECT kpi.save_cursor('csv_upload', 'files', '{}')"))
    with warehouse.tenant("ws-a", actor="run:honest") as db:
        proof = db.execute(sa.text("SELECT current_setting('kpi.scope_proof')")).scalar()
    # the proof of another transaction, replayed
    with (
        pytest.raises(sa.exc.ProgrammingError, match="scoped by the write path"),
        warehouse.unscoped_tenant() as db,
    ):
        db.execute(
            sa.text(
                "SELECT set_config('kpi.workspace_id', 'ws-a', true),"
                " set_config('kpi.actor', 'run:honest', true),"
                " set_config('kpi.scope_proof', :proof, true), pg_current_xact_id()"
            ),
            {"proof": proof},
        )
        assert db.execute(sa.text("SELECT kpi.current_workspace()")).scalar() is None
        db.execute(sa.text("SELECT kpi.open_kpi_stage()"))
    assert _audit(warehouse) == [("ws-b", "signups", "insert", 2.0, "run:b")]


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
