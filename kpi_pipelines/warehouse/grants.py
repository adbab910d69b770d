"""A connection's OAuth grant, sealed, through the owner's functions (migration 0007).

Every call runs in the caller's tenant transaction (`Warehouse.tenant()`), which scopes it
to one workspace. The warehouse sees only sealed bytes: what they hold, and the key that
opens them, belong to integrations/shared/grants.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection


@dataclass(frozen=True)
class SealedGrant:
    connection_id: int
    sealed: bytes = field(repr=False)
    version: int  # what a replacement must have read
    provider: str | None = None


def store_grant(db: Connection, connection_id: int, sealed: bytes) -> int:
    """Record a new grant for a connection of the transaction's workspace (replacing any);
    returns its version."""
    return db.execute(
        sa.text("SELECT kpi.store_oauth_grant(:id, :sealed)"),
        {"id": connection_id, "sealed": sealed},
    ).scalar_one()


def grant_for_update(db: Connection, connection_id: int) -> SealedGrant | None:
    """The connection's grant, its row locked until the transaction ends (another
    transaction asking for it waits, then reads what this one wrote); None: no grant."""
    row = db.execute(
        sa.text("SELECT sealed, version FROM kpi.oauth_grant_for_update(:id)"),
        {"id": connection_id},
    ).one()
    if row.sealed is None:
        return None
    return SealedGrant(connection_id, bytes(row.sealed), row.version)


def replace_grant(db: Connection, connection_id: int, sealed: bytes, read_version: int) -> int:
    """Replace the grant read at `read_version` (a refresh, a new key); returns the new
    version. Fails (serialization_failure) if it changed since."""
    return db.execute(
        sa.text("SELECT kpi.replace_oauth_grant(:id, :sealed, :version)"),
        {"id": connection_id, "sealed": sealed, "version": read_version},
    ).scalar_one()


def grants_for_update(db: Connection) -> list[SealedGrant]:
    """Every grant of the transaction's workspace, their rows locked."""
    rows = db.execute(
        sa.text(
            "SELECT connection_id, provider, sealed, version FROM kpi.oauth_grants_for_update()"
        )
    )
    return [
        SealedGrant(row.connection_id, bytes(row.sealed), row.version, row.provider) for row in rows
    ]
