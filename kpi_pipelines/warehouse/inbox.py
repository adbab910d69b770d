"""The webhook inbox (control plane, as kpi_control): a receiver stores each verified event
once per workspace, within the workspace's quota of unprocessed events; the provider's
sensor claims them into runs and deletes processed ones past their retention.

An event is only a reason to sync (the sync reads the provider's own event list), so one
refused for a full inbox loses nothing: the provider delivers it again later, and the run
the inbox's events start reads it anyway.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from kpi_pipelines.warehouse.control import UnknownWorkspace
from kpi_pipelines.warehouse.database import Warehouse


class InboxFull(Exception):
    """The workspace already holds its quota of unprocessed events: this one is not stored."""

    def __init__(self, workspace_id: str, quota: int) -> None:
        super().__init__(
            f"the webhook inbox of workspace {workspace_id!r} holds its quota of {quota}"
            " unprocessed events (KPI_WEBHOOK_INBOX_QUOTA)"
        )
        self.workspace_id = workspace_id
        self.quota = quota


def store_event(
    warehouse: Warehouse,
    provider: str,
    workspace_id: str,
    event_id: str,
    event_type: str,
    payload: str,
    *,
    quota: int,
) -> str:
    """Store a verified event (its JSON text, exactly as received): "stored", or
    "duplicate" when the workspace already has it. Raises InboxFull past the quota."""
    with warehouse.control() as db:
        # Stores into one workspace's inbox take turns, so that deliveries at once cannot
        # pass the quota together. FOR NO KEY UPDATE waits only for its own kind: the key
        # share locks that foreign keys take on the workspace are not held up.
        exists = db.execute(
            sa.text("SELECT 1 FROM workspaces WHERE id = :ws FOR NO KEY UPDATE"),
            {"ws": workspace_id},
        ).first()
        if exists is None:
            raise UnknownWorkspace(f"workspace {workspace_id!r} does not exist")
        key = {"provider": provider, "ws": workspace_id, "event_id": event_id}
        duplicate = db.execute(
            sa.text(
                "SELECT 1 FROM webhook_inbox"
                " WHERE provider = :provider AND workspace_id = :ws AND event_id = :event_id"
            ),
            key,
        ).first()
        if duplicate:
            return "duplicate"
        # Counted up to the quota only: the cost stays bounded however many rows there are.
        held = db.execute(
            sa.text(
                "SELECT count(*) FROM (SELECT 1 FROM webhook_inbox"
                " WHERE workspace_id = :ws AND processed_at IS NULL LIMIT :quota) AS held"
            ),
            {"ws": workspace_id, "quota": quota},
        ).scalar_one()
        if held >= quota:
            raise InboxFull(workspace_id, quota)
        # The JSON text as received: PostgreSQL parses the very bytes that were signed.
        db.execute(
            sa.text(
                "INSERT INTO webhook_inbox"
                " (provider, event_id, workspace_id, event_type, payload)"
                " VALUES (:provider, :event_id, :ws, :type, CAST(:payload AS jsonb))"
            ),
            {**key, "type": event_type, "payload": payload},
        )
    return "stored"


def delete_processed(
    warehouse: Warehouse, provider: str, *, older_than: timedelta, limit: int
) -> int:
    """Delete up to `limit` of the provider's events processed more than `older_than` ago,
    the oldest first; returns how many were deleted."""
    with warehouse.control() as db:
        deleted = db.execute(
            sa.text(
                "DELETE FROM webhook_inbox WHERE id IN ("
                " SELECT id FROM webhook_inbox"
                " WHERE provider = :provider AND processed_at < now() - :age"
                " ORDER BY processed_at LIMIT :limit)"
            ),
            {"provider": provider, "age": older_than, "limit": limit},
        )
    return deleted.rowcount
