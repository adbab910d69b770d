"""Dagster's own storage in the warehouse server, and the project's Dagster home.

dagster.yaml names `ProjectStorage`: Dagster's run, event-log and schedule tables live in
the warehouse's database (public schema; the KPI tables are in the `kpi` schema), found from
the project's settings (KPI_DATABASE_URL, or the embedded server under KPI_HOME, which the
process joins or starts). So `dagster`, `dg`, `dagster-webserver` and `dagster-daemon` work
as they are from the repository root, and from any shell after `eval "$(kpi-pipelines
env)"`. A deployment may keep Dagster's tables elsewhere with the DAGSTER_PG_* variables.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg
from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import create_pg_engine, get_conn_string

from kpi_pipelines.settings import kpi_home

# One code-location name everywhere (pyproject's code_location_name, the repository's
# workspace.yaml, `kpi-pipelines ui`): schedule and sensor history belong to a location's
# name, and the UI finds a run's job (to re-execute it) by it.
CODE_LOCATION = "kpi_pipelines"

# Dagster's storage connections a process keeps open (one per storage) and opens beyond
# that at most, at once; a kept one is replaced after an hour.
POOL_OVERFLOW = 8
POOL_RECYCLE_SECONDS = 3600

_PACKAGED = Path(__file__).parent / "dagster.yaml"
_CHECKOUT = Path(__file__).parent.parent / "dagster.yaml"


def dagster_yaml() -> Path:
    for candidate in (_PACKAGED, _CHECKOUT):
        if candidate.exists():
            return candidate
    raise FileNotFoundError("dagster.yaml is missing from the installation")


def default_dagster_home() -> Path:
    return kpi_home() / "dagster"


def prepare_dagster_home() -> Path:
    """Set DAGSTER_HOME for this process (and its children): the user's, or the project's
    own under KPI_HOME, whose dagster.yaml is kept the installed one."""
    chosen = os.environ.get("DAGSTER_HOME")
    home = Path(chosen or default_dagster_home()).resolve()
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    # A home the user chose keeps its own instance settings; ours follows the installation.
    if not target.exists() or (not chosen and target.read_bytes() != dagster_yaml().read_bytes()):
        shutil.copyfile(dagster_yaml(), target)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def open_instance() -> dg.DagsterInstance:
    prepare_dagster_home()
    return dg.DagsterInstance.get()


class ProjectStorage(DagsterPostgresStorage):
    """Dagster's run, event-log and schedule storage in the project's PostgreSQL."""

    @classmethod
    def config_type(cls) -> dict:
        return {}

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: dict
    ) -> ProjectStorage:
        storage = cls(postgres_url=storage_url(), inst_data=inst_data)
        storage.pool_connections()
        return storage

    def pool_connections(self) -> None:
        """Keep a connection open per storage instead of Dagster's default of none: each of
        a run's events would otherwise open (and the server fork) a connection of its own,
        which cost PostgreSQL more CPU than the event itself. One kept per storage and
        process, more opened while threads need them (the daemon's) and closed after."""
        # (the storages' engine is private; Dagster is pinned, and its webserver replaces
        # the engine the same way: optimize_for_webserver)
        for storage in (self._run_storage, self._event_log_storage, self._schedule_storage):
            storage._engine = create_pg_engine(
                storage.postgres_url,
                None,
                isolation_level="AUTOCOMMIT",
                pool_size=1,
                max_overflow=POOL_OVERFLOW,
                pool_recycle=POOL_RECYCLE_SECONDS,
                pool_pre_ping=True,
            )

    # Dagster asks for these only to describe the storages one by one; the instance's
    # reference already carries this class whole.
    run_storage_data = event_storage_data = schedule_storage_data = None  # type: ignore[assignment]


# Where a deployment keeps Dagster's tables when not in the warehouse's database.
DEPLOYMENT_STORAGE_VARIABLES = (
    "DAGSTER_PG_USERNAME",
    "DAGSTER_PG_PASSWORD",
    "DAGSTER_PG_HOST",
    "DAGSTER_PG_PORT",
    "DAGSTER_PG_DB",
)


def storage_url() -> str:
    """DAGSTER_PG_* when DAGSTER_PG_DB is set (read as Dagster's own `postgres_db` storage
    settings read them), else the warehouse's (KPI_DATABASE_URL or the embedded server,
    which this process then holds up while it runs)."""
    env = os.environ
    if env.get("DAGSTER_PG_DB"):
        return get_conn_string(
            username=env.get("DAGSTER_PG_USERNAME", ""),
            password=env.get("DAGSTER_PG_PASSWORD", ""),
            hostname=env.get("DAGSTER_PG_HOST", ""),  # empty: libpq's PGHOST
            db_name=env["DAGSTER_PG_DB"],
            port=env.get("DAGSTER_PG_PORT") or "5432",
            scheme="postgresql+psycopg2",
        )
    from kpi_pipelines.warehouse.database import resolve_admin_url

    url = resolve_admin_url().set(drivername="postgresql+psycopg2")
    return url.render_as_string(hide_password=False)
