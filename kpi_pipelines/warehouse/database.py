"""Connections to the warehouse: one login role per engine, tenant-scoped transactions.

The URL's own user only bootstraps (`db upgrade`): it creates three login roles and the
`kpi` schema. Every engine then logs in as one of those roles itself, so what a connection
can see is decided by PostgreSQL, not by our code, and no pooled connection can
`RESET ROLE` its way to more:

- kpi_owner owns the schema and runs migrations;
- kpi_tenant reads and writes tenant data, and only for the workspace that its transaction
  is scoped to (row-level security, FORCE'd so no table owner slips past it);
- kpi_control reads and writes the control plane (workspaces, connections, the webhook
  inbox) across tenants, and has no privilege on tenant data.

None is a superuser, bypasses RLS, creates roles or databases, or is a member of another
role. A transaction's scope (workspace and actor) is transaction-local (`SET LOCAL`) and
proved: an HMAC over it and the transaction's id, under a key only the owner reads, which
row-level security and the audit actor check (migration 0004), so a session that sets its
scope itself sees and writes nothing. A connection is reset with `DISCARD ALL` when it
returns to the pool, so nothing one transaction sets (settings, temporary tables, a role)
reaches the next one.

A tenant session cannot reach other sessions: the tenant role holds no privilege that takes
a blocking lock (its writes go through the owner's SECURITY DEFINER functions), `db
upgrade` revokes the functions that signal, watch or lock out other sessions, and every
session's settings (timeouts included) come from its connection request, which outranks
the role-level defaults a session could give its own role (`ALTER ROLE ... SET`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.engine import URL, Connection, Engine

from kpi_pipelines import settings
from kpi_pipelines.warehouse.migrate import (
    SCHEMA,
    current_revision,
    numbered_head,
    upgrade_to_head,
)

OWNER_ROLE = "kpi_owner"
TENANT_ROLE = "kpi_tenant"
CONTROL_ROLE = "kpi_control"
ROLES = (OWNER_ROLE, TENANT_ROLE, CONTROL_ROLE)
# Every app session resolves names in the kpi schema, then the catalog, and the session's
# temporary schema last, so a temporary table can never stand in for one of ours.
SEARCH_PATH = f"{SCHEMA}, pg_catalog, pg_temp"
_ROLE_ATTRIBUTES = "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION"

# The advisory-lock functions kpi_control keeps (one sync per connection at a time).
SYNC_LOCK_FUNCTIONS = (
    "pg_try_advisory_lock(integer,integer)",
    "pg_advisory_unlock(integer,integer)",
)

# Any constant works; it only has to be the same in every process that migrates.
_MIGRATION_LOCK_KEY = 72_406_113

logger = logging.getLogger("kpi_pipelines.warehouse")

# Catalog functions (and the view over one) through which a session signals, watches or
# locks out another session of the same login: `db upgrade` revokes them from PUBLIC in the
# warehouse's database and grants them back to the predefined roles made for them.
_SESSION_POWERS = """
SELECT p.oid::regprocedure::text AS function,
       CASE WHEN p.proname IN ('pg_terminate_backend', 'pg_cancel_backend')
            THEN 'pg_signal_backend'
            WHEN p.proname LIKE 'pg\\_stat\\_%' THEN 'pg_read_all_stats' END AS grantee
FROM pg_proc p
WHERE p.pronamespace = 'pg_catalog'::regnamespace
  AND (p.proname IN ('pg_terminate_backend', 'pg_cancel_backend', 'pg_stat_get_activity',
                     'pg_stat_get_backend_activity')
       OR p.proname LIKE 'pg\\_advisory\\_%' OR p.proname LIKE 'pg\\_try\\_advisory\\_%')
ORDER BY 1
"""


def normalize_url(url: str) -> URL:
    """Accept postgres://, postgresql://, postgresql+psycopg2:// and friends; use psycopg 3."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() not in ("postgresql", "postgres"):
        raise ValueError(
            f"KPI_DATABASE_URL must point at PostgreSQL, got a {parsed.get_backend_name()!r} URL"
        )
    return parsed.set(drivername="postgresql+psycopg")


def resolve_admin_url(home: Path | None = None) -> URL:
    """KPI_DATABASE_URL when set, else the embedded server (started on first use)."""
    configured = settings.database_url()
    if configured:
        return normalize_url(configured)
    from kpi_pipelines.warehouse.embedded import embedded_server

    return normalize_url(embedded_server(home).admin_url)


def role_url(admin_url: URL, role: str) -> URL:
    """The same server and database as `admin_url`, logged in as `role` (its password from
    KPI_<ROLE>_DB_PASSWORD when the server asks for one)."""
    return admin_url.set(username=role, password=settings.role_password(role))


class WorkspaceScopeError(PermissionError):
    """A write named a workspace other than the one its transaction is scoped to."""


def connection_lost(exc: BaseException) -> bool:
    """The server went away (a restart, a failover, the network), as opposed to a statement
    it refused; raised by SQLAlchemy or by psycopg itself (COPY goes to psycopg directly)."""
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig
    if not isinstance(exc, psycopg.OperationalError):
        return False
    sqlstate = getattr(exc, "sqlstate", None)
    # No SQLSTATE: the client lost the server; class 08: connection exceptions; 57P0x: the
    # server shut down or is starting.
    return sqlstate is None or sqlstate.startswith(("08", "57P0"))


class WarehouseLoginRefused(RuntimeError):
    """The server refused a login role's password."""


class WarehouseNotReady(RuntimeError):
    """The schema is older than this code and cannot be migrated from this process."""


@dataclass
class Warehouse:
    """Engines per role on one server; build with `Warehouse.connect()`."""

    admin_url: URL
    _engines: dict[str, Engine]
    _ready: bool = False
    _key: bytes | None = field(default=None, repr=False)

    @classmethod
    def connect(cls, url: str | URL | None = None, *, home: Path | None = None) -> Warehouse:
        admin_url = normalize_url(str(url)) if url else resolve_admin_url(home)
        key = admin_url.render_as_string(hide_password=False)
        with _cache_lock:
            cached = _warehouses.get(key)
            if cached is None:
                cached = cls(admin_url=admin_url, _engines={})
                _warehouses[key] = cached
        return cached

    def engine(self, role: str | None) -> Engine:
        """The pooled engine that logs in as `role` (None: the URL's own user, to bootstrap)."""
        name = role or "admin"
        with _cache_lock:
            engine = self._engines.get(name)
            if engine is None:
                if role is None:
                    engine = sa.create_engine(self.admin_url, pool_size=1, pool_pre_ping=True)
                else:
                    engine = _role_engine(role_url(self.admin_url, role), role)
                self._engines[name] = engine
        return engine

    @contextmanager
    def tenant(self, workspace_id: str, *, actor: str) -> Iterator[Connection]:
        """One transaction as kpi_tenant, scoped to `workspace_id` and written by `actor`
        (a run or a user; the audit log takes it from here); commits on success."""
        if not workspace_id:
            raise WorkspaceScopeError("a tenant transaction needs a workspace id")
        if not actor:
            raise WorkspaceScopeError("a tenant transaction needs an actor (a run or a user)")
        key = self._scope_key()
        with self.engine(TENANT_ROLE).begin() as conn:
            xact = conn.execute(sa.text("SELECT pg_current_xact_id()::text")).scalar_one()
            conn.execute(
                sa.text(
                    "SELECT set_config('kpi.workspace_id', :ws, true),"
                    " set_config('kpi.actor', :actor, true),"
                    " set_config('kpi.scope_proof', :proof, true)"
                ),
                {
                    "ws": workspace_id,
                    "actor": actor,
                    "proof": scope_proof(key, workspace_id, actor, xact),
                },
            )
            yield conn

    @contextmanager
    def unscoped_tenant(self) -> Iterator[Connection]:
        """A kpi_tenant transaction with no workspace set: it must see nothing (tests, checks)."""
        with self.engine(TENANT_ROLE).begin() as conn:
            yield conn

    @contextmanager
    def control(self) -> Iterator[Connection]:
        """One transaction as kpi_control (control plane across tenants)."""
        with self.engine(CONTROL_ROLE).begin() as conn:
            yield conn

    @contextmanager
    def owner(self) -> Iterator[Connection]:
        with self.engine(OWNER_ROLE).begin() as conn:
            yield conn

    def _scope_key(self) -> bytes:
        """The key that proves a transaction's scope, read once as the owner (who alone
        can)."""
        if self._key is None:
            with self.engine(OWNER_ROLE).connect() as db:
                self._key = bytes(db.execute(sa.text("SELECT key FROM kpi.scope_key")).scalar_one())
        return self._key

    def tenant_session_powers(self) -> list[str]:
        """What a kpi_tenant session may still use to signal, watch or lock out another
        session (empty once `db upgrade` revoked it, which takes a superuser)."""
        with self.engine(None).connect() as admin:
            return _session_powers_left(admin)

    def session_power_statements(self) -> list[str]:
        """The statements a superuser runs in this database to revoke those powers."""
        with self.engine(None).connect() as admin:
            return _session_power_statements(admin)

    def upgrade(self) -> str:
        """Create or update the roles and schema, then migrate to head, as the URL's user;
        safe to run concurrently."""
        with self.engine(None).connect() as admin:
            admin.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            failed = True
            try:
                _bootstrap(admin)
                admin.commit()
                revision = upgrade_to_head(self.engine(OWNER_ROLE))
                failed = False
                return revision
            finally:
                # the driver's own transaction too: a statement _bootstrap sent through it
                # may have aborted it behind SQLAlchemy's back
                admin.rollback()
                admin.connection.dbapi_connection.rollback()
                try:
                    admin.execute(
                        sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK_KEY}
                    )
                    admin.commit()
                except sa.exc.DBAPIError:
                    # never hide the error that got us here (the pool's reset releases the
                    # session's advisory lock anyway)
                    if not failed:
                        raise

    def ensure_ready(self) -> Warehouse:
        """Upgrade once per process when the schema is behind; later calls are free.

        A schema at head needs nothing but the owner's login, so run processes need not
        hold the bootstrap user's credentials once `db upgrade` has been run.
        """
        if not self._ready:
            try:
                at_head = current_revision(self.engine(OWNER_ROLE)) == numbered_head()
            except (sa.exc.OperationalError, WarehouseLoginRefused):
                at_head = False  # no owner login yet: a first start
            if not at_head:
                self.upgrade()
            self._ready = True
        return self

    def dispose(self) -> None:
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()


_cache_lock = threading.Lock()
_warehouses: dict[str, Warehouse] = {}


def scope_proof(key: bytes, workspace_id: str, actor: str, xact: str) -> str:
    """The HMAC that `kpi.proved_scope()` recomputes: scope and transaction, length-prefixed
    so that no two scopes share a message."""
    message = f"{len(workspace_id)}:{workspace_id}:{len(actor)}:{actor}:{xact}"
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def session_options(role: str) -> dict[str, str]:
    """The settings a role's sessions start with, sent in the connection request: they
    outrank the role's own defaults, which any session may set for its login (`ALTER ROLE
    kpi_tenant SET default_transaction_read_only = on` would otherwise reach every later
    session of every workspace)."""
    options = {
        "search_path": SEARCH_PATH.replace(" ", ""),
        "default_transaction_read_only": "off",
        "default_transaction_isolation": "read committed",
        "default_transaction_deferrable": "off",
        "row_security": "on",
        "TimeZone": "UTC",
        "DateStyle": "ISO",
        "IntervalStyle": "postgres",
        "extra_float_digits": "1",
        "bytea_output": "hex",
        "client_encoding": "UTF8",
        "standard_conforming_strings": "on",
    }
    if role != OWNER_ROLE:  # migrations may take their time
        options |= {
            "statement_timeout": _milliseconds(settings.db_statement_timeout_seconds()),
            "lock_timeout": _milliseconds(settings.db_lock_timeout_seconds()),
            "idle_in_transaction_session_timeout": _milliseconds(
                settings.db_idle_in_transaction_timeout_seconds()
            ),
        }
    return options


def _milliseconds(seconds: float) -> str:
    return str(max(1, round(seconds * 1000)))


def _role_engine(url: URL, role: str) -> Engine:
    options = " ".join(
        f"-c {name}={value.replace(' ', chr(92) + ' ')}"
        for name, value in session_options(role).items()
    )
    engine = sa.create_engine(
        url,
        pool_size=4,
        max_overflow=4,
        pool_pre_ping=True,
        # Our own reset below replaces the pool's plain rollback.
        pool_reset_on_return=None,
        connect_args={
            "options": options,
            # No server-side prepared statements: DISCARD ALL drops them behind psycopg's
            # back (and our transactions are a few large statements anyway).
            "prepare_threshold": None,
        },
    )
    sa.event.listen(engine, "handle_error", _explain_refused_login)
    sa.event.listen(engine, "connect", _ignore_role_settings)
    sa.event.listen(engine, "reset", _discard_session_state)
    return engine


def _explain_refused_login(context: Any) -> None:
    """A refused password says what to do: PostgreSQL lets any session change its own
    login's password, so a password that worked yesterday may have been changed from inside
    a session; `db upgrade` sets it again."""
    error = context.original_exception
    if isinstance(error, psycopg.OperationalError) and "password authentication failed" in str(
        error
    ):
        user = context.engine.url.username if context.engine is not None else "a login role"
        raise WarehouseLoginRefused(
            f"the warehouse refused the password of {user} ({user.upper()}_DB_PASSWORD)."
            " If it was right before, it may have been changed from inside a session (PostgreSQL"
            " lets every login change its own password): run `kpi-pipelines db upgrade` with the"
            " bootstrap user to set it again, or give the role certificate or peer"
            " authentication"
        ) from None


# Role-level defaults this process has warned about (once each).
_warned_role_settings: set[tuple[str, str]] = set()


def _ignore_role_settings(dbapi_connection: Any, record: Any) -> None:
    """A new session of a login whose role carries defaults of its own (ALTER ROLE ... SET,
    which a session may do to its own role) runs without them: each goes back to the
    server's built-in value for this session, and again after every DISCARD ALL (which
    restores the session's starting values)."""
    found = dbapi_connection.execute(
        "SELECT name, boot_val FROM pg_settings"
        " WHERE source IN ('user', 'database user') AND context = 'user'"
    ).fetchall()
    dbapi_connection.commit()
    record.info["role_settings"] = found
    _reset_role_settings(dbapi_connection, found)
    role = dbapi_connection.info.user
    for name, _ in found:
        if (role, name) not in _warned_role_settings:
            _warned_role_settings.add((role, name))
            logger.warning(
                "the login role %s has its own default for %s (ALTER ROLE ... SET, which any"
                " of its sessions can make): ignored; `kpi-pipelines db upgrade` removes it",
                role,
                name,
            )


def _reset_role_settings(dbapi_connection: Any, found: list[tuple[str, str | None]]) -> None:
    if not found:
        return
    for name, value in found:
        dbapi_connection.execute("SELECT set_config(%s, %s, false)", (name, value or ""))
    dbapi_connection.commit()


def _discard_session_state(dbapi_connection: Any, record: Any, reset_state: Any) -> None:
    """Roll back, then DISCARD ALL: session settings, temporary tables, prepared statements
    and any role a transaction switched to are gone before the connection is reused."""
    dbapi_connection.rollback()
    if reset_state.terminate_only:
        return
    dbapi_connection.autocommit = True  # DISCARD ALL cannot run inside a transaction
    try:
        dbapi_connection.execute("DISCARD ALL")
    finally:
        dbapi_connection.autocommit = False
    _reset_role_settings(dbapi_connection, record.info.get("role_settings", []))


def _reset_role_defaults(admin: Connection) -> None:
    """Remove the defaults a session gave its own login role (ALTER ROLE ... SET, which
    PostgreSQL lets every login do): the engines ignore them, and here they go."""
    driver = admin.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    found = admin.execute(
        sa.text(
            "SELECT r.rolname, d.datname FROM pg_db_role_setting s"
            " JOIN pg_roles r ON r.oid = s.setrole LEFT JOIN pg_database d ON d.oid = s.setdatabase"
            " WHERE r.rolname = ANY(:roles)"
        ),
        {"roles": list(ROLES)},
    ).all()
    for role, database in found:
        statement = sql.SQL("ALTER ROLE {} RESET ALL").format(sql.Identifier(role))
        if database is not None:
            statement = sql.SQL("ALTER ROLE {} IN DATABASE {} RESET ALL").format(
                sql.Identifier(role), sql.Identifier(database)
            )
        try:
            with driver.transaction():  # a savepoint: a refusal leaves the bootstrap going
                driver.execute(statement)
        except psycopg.errors.InsufficientPrivilege as exc:
            logger.warning("could not remove the role-level defaults of %s: %s", role, exc)


def _session_powers_left(admin: Connection) -> list[str]:
    """The session powers of _SESSION_POWERS that kpi_tenant can still use."""
    left = [
        f"FUNCTION {row.function}"
        for row in admin.execute(sa.text(_SESSION_POWERS))
        if admin.execute(
            sa.text("SELECT has_function_privilege(:role, CAST(:f AS regprocedure), 'EXECUTE')"),
            {"role": TENANT_ROLE, "f": row.function},
        ).scalar()
    ]
    if admin.execute(
        sa.text("SELECT has_table_privilege(:role, 'pg_catalog.pg_stat_activity', 'SELECT')"),
        {"role": TENANT_ROLE},
    ).scalar():
        left.append("TABLE pg_catalog.pg_stat_activity")
    return left


_warned_session_powers = threading.Event()


def _revoke_session_powers(admin: Connection) -> None:
    """Take from PUBLIC (every login of this database but superusers) the functions that
    signal, watch or lock out other sessions; the predefined roles made for them keep them.
    Only the functions' owner (a superuser) can: another bootstrap user gets a warning
    naming the statements a superuser must run."""
    is_superuser = admin.execute(
        sa.text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    ).scalar()
    statements = _session_power_statements(admin)
    if is_superuser:
        for statement in statements:
            admin.execute(sa.text(statement))
        return
    if _session_powers_left(admin) and not _warned_session_powers.is_set():
        _warned_session_powers.set()  # once a process: every upgrade would say it again
        logger.warning(
            "kpi_tenant sessions can still signal, watch or lock out other sessions: only a"
            " superuser can revoke that; run as one, in this database: %s",
            " ".join(statements),
        )


def _session_power_statements(admin: Connection) -> list[str]:
    statements = []
    for row in admin.execute(sa.text(_SESSION_POWERS)):
        statements.append(f"REVOKE EXECUTE ON FUNCTION {row.function} FROM PUBLIC;")
        if row.grantee:
            statements.append(f"GRANT EXECUTE ON FUNCTION {row.function} TO {row.grantee};")
    statements += [
        "REVOKE SELECT ON pg_catalog.pg_stat_activity FROM PUBLIC;",
        "GRANT SELECT ON pg_catalog.pg_stat_activity TO pg_read_all_stats;",
        # The control plane's lock of a connection for one sync (assets/workspace_sync.py):
        # the pipeline's own code, never a tenant's SQL, runs as kpi_control.
        *(f"GRANT EXECUTE ON FUNCTION {f} TO {CONTROL_ROLE};" for f in SYNC_LOCK_FUNCTIONS),
    ]
    return statements


def _bootstrap(admin: Connection) -> None:
    """Login roles (none superuser, BYPASSRLS or a member of another role) and the schema,
    created or brought in line by the URL's user."""
    driver = admin.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    existing = {
        row.rolname: row
        for row in admin.execute(
            sa.text(
                "SELECT rolname, rolsuper, rolbypassrls, rolreplication, rolcanlogin, rolinherit,"
                " rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = ANY(:r)"
            ),
            {"r": list(ROLES)},
        )
    }
    for role in ROLES:
        current = existing.get(role)
        password = settings.role_password(role)
        if current is None:
            attributes = _ROLE_ATTRIBUTES
        else:
            # Name only what must change: a CREATEROLE (not superuser) bootstrap user may not
            # even mention SUPERUSER, BYPASSRLS or REPLICATION.
            attributes = " ".join(
                attribute
                for attribute, is_wrong in (
                    ("LOGIN", not current.rolcanlogin),
                    ("NOINHERIT", current.rolinherit),
                    ("NOCREATEDB", current.rolcreatedb),
                    ("NOCREATEROLE", current.rolcreaterole),
                    ("NOSUPERUSER", current.rolsuper),
                    ("NOBYPASSRLS", current.rolbypassrls),
                    ("NOREPLICATION", current.rolreplication),
                )
                if is_wrong
            )
            if not attributes and not password:
                continue
        verb = "CREATE" if current is None else "ALTER"
        statement = sql.SQL(f"{verb} ROLE {{}} {attributes}").format(sql.Identifier(role))
        if password:
            statement += sql.SQL(" PASSWORD {}").format(sql.Literal(password))
        driver.execute(statement)
    # An earlier setup may have made an app role a member of another (SET ROLE kpi_owner
    # from a tenant session would turn FORCE ROW LEVEL SECURITY off): undo it.
    memberships = admin.execute(
        sa.text(
            "SELECT r.rolname AS granted, m.rolname AS member FROM pg_auth_members a"
            " JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member"
            " WHERE m.rolname = ANY(:r)"
        ),
        {"r": list(ROLES)},
    ).all()
    for granted, member in memberships:
        driver.execute(
            sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(granted), sql.Identifier(member))
        )
    is_superuser = admin.execute(
        sa.text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    ).scalar()
    if not is_superuser:
        # The bootstrap user (never an app login) must act as the owner to create its schema.
        # PostgreSQL 16+ gives a CREATEROLE user ADMIN on the roles it creates but neither
        # SET (to create objects as the owner) nor INHERIT (to grant on them): grant both.
        modern = admin.execute(sa.text("SHOW server_version_num")).scalar_one()
        set_option = "m.set_option AND m.inherit_option" if int(modern) >= 160000 else "true"
        can_act_as_owner = admin.execute(
            sa.text(
                f"SELECT bool_or({set_option}) FROM pg_auth_members m"
                " JOIN pg_roles r ON r.oid = m.roleid"
                " WHERE r.rolname = :owner"
                " AND m.member = (SELECT oid FROM pg_roles WHERE rolname = current_user)"
            ),
            {"owner": OWNER_ROLE},
        ).scalar()
        if not can_act_as_owner:
            admin.execute(
                sa.text(
                    f"GRANT {OWNER_ROLE} TO current_user WITH INHERIT TRUE, SET TRUE"
                    if int(modern) >= 160000
                    else f"GRANT {OWNER_ROLE} TO current_user"
                )
            )
    database = sql.Identifier(admin.execute(sa.text("SELECT current_database()")).scalar_one())
    _reset_role_defaults(admin)
    driver.execute(
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}, {}, {}").format(
            database, *(sql.Identifier(r) for r in ROLES)
        )
    )
    _revoke_session_powers(admin)
    admin.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA} AUTHORIZATION {OWNER_ROLE}"))
    admin.execute(sa.text(f"GRANT USAGE ON SCHEMA {SCHEMA} TO {TENANT_ROLE}, {CONTROL_ROLE}"))
