"""Point Dagster's own storage at the warehouse server and open the instance.

`kpi-pipelines` commands call `prepare_dagster_home()` before they touch Dagster: it makes
DAGSTER_HOME (unless set), puts the project's dagster.yaml there, and derives the
DAGSTER_PG_* variables from the warehouse URL (Dagster's tables live in the same database,
in the public schema; the KPI tables are in the `kpi` schema).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg
from sqlalchemy.engine import URL

from kpi_pipelines.settings import kpi_home

_PACKAGED = Path(__file__).parent / "dagster.yaml"
_CHECKOUT = Path(__file__).parent.parent / "dagster.yaml"


def dagster_yaml() -> Path:
    for candidate in (_PACKAGED, _CHECKOUT):
        if candidate.exists():
            return candidate
    raise FileNotFoundError("dagster.yaml is missing from the installation")


def storage_env(admin_url: URL) -> dict[str, str]:
    """The DAGSTER_PG_* variables for dagster.yaml, from the warehouse's URL."""
    env = {
        "DAGSTER_PG_USERNAME": admin_url.username or "",
        "DAGSTER_PG_PASSWORD": admin_url.password or "",
        "DAGSTER_PG_HOST": admin_url.host or "",
        "DAGSTER_PG_DB": admin_url.database or "",
        "DAGSTER_PG_PORT": str(admin_url.port or 5432),
    }
    socket_dir = admin_url.query.get("host")
    if not admin_url.host and socket_dir:
        # A Unix socket: an empty host makes libpq read PGHOST.
        env["PGHOST"] = socket_dir if isinstance(socket_dir, str) else socket_dir[0]
    return env


def prepare_dagster_home(admin_url: URL) -> Path:
    """Set DAGSTER_HOME and the storage variables (keeping any the user set) for this process."""
    home = Path(os.environ.get("DAGSTER_HOME") or kpi_home() / "dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists():
        shutil.copyfile(dagster_yaml(), target)
    os.environ["DAGSTER_HOME"] = str(home)
    for name, value in storage_env(admin_url).items():
        os.environ.setdefault(name, value)
    return home


def open_instance(admin_url: URL) -> dg.DagsterInstance:
    prepare_dagster_home(admin_url)
    return dg.DagsterInstance.get()
