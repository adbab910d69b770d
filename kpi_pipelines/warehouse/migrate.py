"""Alembic, driven from code: `kpi-pipelines db upgrade` and first use both land here."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).parent / "migrations"
SCHEMA = "kpi"  # every table of the warehouse, and the migrations' own version table
VERSION_TABLE = "alembic_version"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"version_table_schema": SCHEMA, "version_table": VERSION_TABLE}
        )
        return context.get_current_revision()


def upgrade_to_head(owner_engine: Engine) -> str:
    """Migrate as the owner role; returns the revision the schema is at."""
    head = head_revision()
    if current_revision(owner_engine) == head:
        return head
    config = alembic_config()
    with owner_engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    return head
