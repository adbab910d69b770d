"""Webhook hardening: a connection's proved account, and the inbox's quota and retention.

- `connections.proved_account` is the provider account a connection's own credentials were
  shown to belong to (Stripe: `GET /v1/account` with the connection's key), and when. A
  shared endpoint (Stripe Connect's `/stripe`) routes an account's events only to a
  connection that proved it. Only kpi_control writes it: the tenant role's column grants
  (0002) name the health columns alone.
- Indexes for the inbox's per-workspace quota (its unprocessed rows, counted at each
  store) and for deleting processed rows past their retention (a bounded batch per tick).

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE kpi.connections ADD COLUMN proved_account text,"
        " ADD COLUMN account_proved_at timestamptz;"
        " CREATE INDEX webhook_inbox_unprocessed_per_workspace"
        " ON kpi.webhook_inbox (workspace_id) WHERE processed_at IS NULL;"
        " CREATE INDEX webhook_inbox_processed"
        " ON kpi.webhook_inbox (provider, processed_at) WHERE processed_at IS NOT NULL;"
    )


def downgrade() -> None:
    op.execute(
        "DROP INDEX kpi.webhook_inbox_processed;"
        " DROP INDEX kpi.webhook_inbox_unprocessed_per_workspace;"
        " ALTER TABLE kpi.connections DROP COLUMN account_proved_at,"
        " DROP COLUMN proved_account;"
    )
