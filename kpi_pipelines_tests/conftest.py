"""Fixtures on real parts: the real PostgreSQL (embedded, or KPI_DATABASE_URL) and Dagster."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from kpi_pipelines.warehouse.control import Workspace, add_workspace
from kpi_pipelines.warehouse.database import Warehouse
from kpi_pipelines_tests.canary import SecretLeak, scanned_instance, warehouse_leaks

pytest_plugins = [
    "kpi_pipelines_tests.canary",
    "kpi_pipelines_tests.processes",
    "kpi_pipelines_tests.integrations.stripe.world",
    "kpi_pipelines_tests.integrations.stripe.scripted_world",
    "kpi_pipelines_tests.integrations.notion.world",
]

TABLES = (
    "notes",
    "oauth_grants",
    "kpi_mart",
    "webhook_inbox",
    "audit_log",
    "manual_overrides",
    "sync_state",
    "kpi_data",
    "raw_records",
    "connections",
    "fx_rates",
    "workspaces",
)


@pytest.fixture(scope="session")
def kpi_home() -> Iterator[Path]:
    """A private KPI_HOME for the whole session (its embedded server, Dagster home, drops).

    Not under pytest's tmp_path: pytest prunes old base folders when another session
    starts, which would pull the data folder from under a running server.
    """
    home = Path(tempfile.mkdtemp(prefix="kpi-tests-"))
    # Registered before the server starts, so it runs after the server has stopped.
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KPI_HOME", str(home))
        patch.delenv("DAGSTER_HOME", raising=False)
        yield home


@pytest.fixture(scope="session")
def warehouse(kpi_home: Path) -> Warehouse:
    return Warehouse.connect().ensure_ready()


@pytest.fixture(autouse=True)
def _empty_warehouse(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test that uses the warehouse starts from empty tables, and leaves no secret in
    any table (the secret canary)."""
    if "warehouse" not in request.fixturenames:
        yield
        return
    warehouse: Warehouse = request.getfixturevalue("warehouse")
    with warehouse.owner() as db:
        db.execute(sa.text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    yield
    found = warehouse_leaks(warehouse)
    if found:
        raise SecretLeak("a secret leaked into the warehouse: " + "; ".join(found))


@pytest.fixture(scope="module")
def dagster_instance() -> Iterator[dg.DagsterInstance]:
    """One Dagster instance per test module (creating one costs about half a second)."""
    with scanned_instance() as instance:
        yield instance


@pytest.fixture
def restored_environment() -> Iterator[None]:
    """For tests of commands that open the Dagster instance, which sets DAGSTER_* in the
    process: the environment is put back as it was."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def workspace_a(warehouse: Warehouse) -> Workspace:
    return add_workspace(
        warehouse, Workspace(id="ws-a", name="A", reporting_currency="USD", timezone="UTC")
    )


@pytest.fixture
def workspace_b(warehouse: Warehouse) -> Workspace:
    return add_workspace(
        warehouse,
        Workspace(id="ws-b", name="B", reporting_currency="EUR", timezone="Europe/Berlin"),
    )


def table_snapshot(warehouse: Warehouse) -> dict[str, list[tuple]]:
    """Every row of every warehouse table, as the owner sees it (for 'nothing changed')."""
    snapshot = {}
    with warehouse.engine(None).connect() as db:
        for table in TABLES:
            rows = db.execute(sa.text(f"SELECT * FROM kpi.{table}")).all()
            snapshot[table] = sorted((tuple(r) for r in rows), key=repr)
    return snapshot
