"""The migrations' numbering, which lets a run check its schema without loading Alembic."""

from __future__ import annotations

from alembic.script import ScriptDirectory

from kpi_pipelines.warehouse.control import Workspace
from kpi_pipelines.warehouse.database import OWNER_ROLE, Warehouse
from kpi_pipelines.warehouse.migrate import (
    MIGRATIONS,
    NUMBERED_MIGRATION,
    alembic_config,
    current_revision,
    head_revision,
    numbered_head,
)
from kpi_pipelines_tests.warehouse.test_bootstrap_roles import assert_raw_payloads_skip_pglz


def test_every_migration_is_numbered_after_the_one_before() -> None:
    files = sorted(p.name for p in (MIGRATIONS / "versions").iterdir() if p.suffix == ".py")
    assert all(NUMBERED_MIGRATION.fullmatch(name) for name in files), files
    scripts = ScriptDirectory.from_config(alembic_config())
    chain = list(reversed(list(scripts.walk_revisions())))
    assert [s.revision for s in chain] == [name[:4] for name in files]
    assert [s.down_revision for s in chain] == [None, *(name[:4] for name in files[:-1])]
    assert numbered_head() == head_revision() == chain[-1].revision


def test_a_migrated_warehouse_reads_as_at_the_numbered_head(warehouse: Warehouse) -> None:
    assert current_revision(warehouse.engine(OWNER_ROLE)) == numbered_head()


def test_raw_payloads_land_without_pglz(warehouse: Warehouse, workspace_a: Workspace) -> None:
    assert_raw_payloads_skip_pglz(warehouse, workspace_a.id)
