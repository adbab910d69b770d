"""The daily KPI mart: one row per workspace and day, every metric of every provider (manual
overrides applied, as kpi_data holds them), rebuilt by the `kpi_mart` asset. Tenant data,
isolated by row-level security like kpi_data.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

WORKSPACE_SCOPE = "workspace_id = current_setting('kpi.workspace_id', true)"


def upgrade() -> None:
    op.execute(
        f"""
CREATE TABLE kpi.kpi_mart (
    workspace_id text NOT NULL REFERENCES kpi.workspaces ON DELETE CASCADE,
    day date NOT NULL,
    -- metric -> value (a JSON object: the columns change as providers and metrics do)
    metrics jsonb NOT NULL CHECK (jsonb_typeof(metrics) = 'object'),
    built_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, day)
);
ALTER TABLE kpi.kpi_mart ENABLE ROW LEVEL SECURITY;
ALTER TABLE kpi.kpi_mart FORCE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON kpi.kpi_mart
    USING ({WORKSPACE_SCOPE}) WITH CHECK ({WORKSPACE_SCOPE});
GRANT SELECT, INSERT, UPDATE, DELETE ON kpi.kpi_mart TO kpi_tenant;
"""
    )


def downgrade() -> None:
    op.execute("DROP TABLE kpi.kpi_mart;")
