"""Connections to the warehouse, one engine per role, and tenant-scoped transactions.

The URL's own user only bootstraps: it creates the three roles and the `kpi` schema. Every
other connection switches to one of the roles with SET ROLE when it is opened, so what a
connection can see is decided by PostgreSQL, not by our code:

- kpi_owner owns the schema and runs migrations;
- kpi_tenant reads and writes tenant data, and only for the workspace that its transaction
  is scoped to (row-level security, FORCE'd so no table owner slips past it);
- kpi_control reads and writes the control plane (workspaces, connections, the webhook
  inbox) across tenants, and has no privilege on tenant data.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

from kpi_pipelines import settings

SCHEMA = "kpi"
OWNER_ROLE = "kpi_owner"
TENANT_ROLE = "kpi_tenant"
CONTROL_ROLE = "kpi_control"
ROLES = (OWNER_ROLE, TENANT_ROLE, CONTROL_ROLE)

# Any constant works; it only has to be the same in every process that migrates.
_MIGRATION_LOCK_KEY = 72_406_113


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


class WorkspaceScopeError(PermissionError):
    """A write named a workspace other than the one its transaction is scoped to."""


@dataclass
class Warehouse:
    """Engines per role on one server; build with `Warehouse.connect()`."""

    admin_url: URL
    _engines: dict[str, Engine]
    _ready: bool = False

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
        """The pooled engine whose connections act as `role` (None: the URL's own user)."""
        name = role or "admin"
        with _cache_lock:
            engine = self._engines.get(name)
            if engine is None:
                engine = sa.create_engine(
                    self.admin_url, pool_size=4, max_overflow=4, pool_pre_ping=True
                )
                if role is not None:
                    _act_as(engine, role)
                self._engines[name] = engine
        return engine

    @contextmanager
    def tenant(self, workspace_id: str, *, actor: str) -> Iterator[Connection]:
        """One transaction as kpi_tenant, scoped to `workspace_id`; commits on success."""
        if not workspace_id:
            raise WorkspaceScopeError("a tenant transaction needs a workspace id")
        with self.engine(TENANT_ROLE).begin() as conn:
            conn.execute(
                sa.text(
                    "SELECT set_config('kpi.workspace_id', :ws, true),"
                    " set_config('kpi.actor', :actor, true)"
                ),
                {"ws": workspace_id, "actor": actor},
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

    def upgrade(self) -> str:
        """Create the roles and schema if missing, then migrate to head; safe to run concurrently."""
        from kpi_pipelines.warehouse.migrate import upgrade_to_head

        with self.engine(None).connect() as admin:
            admin.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            try:
                _bootstrap(admin)
                admin.commit()
                return upgrade_to_head(self.engine(OWNER_ROLE))
            finally:
                admin.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK_KEY})
                admin.commit()

    def ensure_ready(self) -> Warehouse:
        """Upgrade once per process; later calls are free."""
        if not self._ready:
            self.upgrade()
            self._ready = True
        return self

    def dispose(self) -> None:
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()


_cache_lock = threading.Lock()
_warehouses: dict[str, Warehouse] = {}


def _act_as(engine: Engine, role: str) -> None:
    @sa.event.listens_for(engine, "connect")
    def _set_role(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET ROLE {role}")
            cursor.execute(f"SET search_path = {SCHEMA}, pg_catalog")
        dbapi_connection.commit()


def _bootstrap(admin: Connection) -> None:
    """Roles (none superuser or BYPASSRLS) and the schema, created by the URL's user."""
    for role in ROLES:
        exists = admin.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role})
        if exists.first() is None:
            admin.execute(sa.text(f"CREATE ROLE {role} NOLOGIN NOSUPERUSER NOBYPASSRLS"))
    member_of = {
        row[0]
        for row in admin.execute(
            sa.text(
                "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
                " WHERE m.member = (SELECT oid FROM pg_roles WHERE rolname = current_user)"
            )
        )
    }
    is_superuser = admin.execute(
        sa.text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    ).scalar()
    for role in ROLES:
        if role not in member_of and not is_superuser:
            admin.execute(sa.text(f"GRANT {role} TO current_user"))
    admin.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA} AUTHORIZATION {OWNER_ROLE}"))
    admin.execute(sa.text(f"GRANT USAGE ON SCHEMA {SCHEMA} TO {TENANT_ROLE}, {CONTROL_ROLE}"))
