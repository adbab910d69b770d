"""Alembic, driven from code: `kpi-pipelines db upgrade` and first use both land here.

Alembic (with Mako and Pygments, about 0.15 CPU-s) loads only to migrate: a process whose
schema is at head (every run's) checks that by reading the version table against the numbered files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
SCHEMA = "kpi"  # every table of the warehouse, and the migrations' own version table
VERSION_TABLE = "alembic_version"
# Every migration is versions/NNNN_<what>.py with revision "NNNN" and the one before as its
# down_revision (a test holds them to it), so the highest number is the head.
NUMBERED_MIGRATION = re.compile(r"(\d{4})_\w+\.py")


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    """The head as Alembic reads it from the migration scripts."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def numbered_head() -> str:
    """The head from the migrations' file names alone (no Alembic)."""
    numbers = [
        match.group(1)
        for path in (MIGRATIONS / "versions").iterdir()
        if (match := NUMBERED_MIGRATION.fullmatch(path.name))
    ]
    assert numbers, "no migrations found"
    return max(numbers)


def current_revision(engine: Engine) -> str | None:
    """The revision the schema is at (None before the first migration)."""
    with engine.connect() as conn:
        if (
            conn.execute(
                sa.text("SELECT to_regclass(:table)"), {"table": f"{SCHEMA}.{VERSION_TABLE}"}
            ).scalar()
            is None
        ):
            return None
        versions = (
            conn.execute(sa.text(f"SELECT version_num FROM {SCHEMA}.{VERSION_TABLE}"))
            .scalars()
            .all()
        )
    # one row on a linear history; Alembic's own reading would refuse several
    return versions[0] if len(versions) == 1 else None


def upgrade_to_head(owner_engine: Engine) -> str:
    """Migrate as the owner role; returns the revision the schema is at."""
    from alembic import command

    head = head_revision()
    if current_revision(owner_engine) == head:
        return head
    config = alembic_config()
    with owner_engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    return head
