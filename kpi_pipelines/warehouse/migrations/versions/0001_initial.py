"""Initial warehouse: control plane, tenant tables with row-level security, audit triggers.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TENANT_TABLES = ("raw_records", "kpi_data", "sync_state", "manual_overrides", "audit_log")
KPI_KEY = 'workspace_id, source, metric, "timestamp", dimensions_key'
WORKSPACE_SCOPE = "workspace_id = current_setting('kpi.workspace_id', true)"

SCHEMA_SQL = f"""
CREATE TABLE workspaces (
    id text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]{{0,62}}$'),
    name text NOT NULL,
    reporting_currency char(3) NOT NULL CHECK (reporting_currency ~ '^[A-Z]{{3}}$'),
    timezone text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE connections (
    id bigserial PRIMARY KEY,
    workspace_id text NOT NULL REFERENCES workspaces ON DELETE CASCADE,
    provider text NOT NULL,
    name text NOT NULL DEFAULT 'default',
    settings jsonb NOT NULL DEFAULT '{{}}',
    -- names of the environment variables that hold secrets, never the secrets themselves
    secret_env jsonb NOT NULL DEFAULT '{{}}',
    enabled boolean NOT NULL DEFAULT true,
    consecutive_failures integer NOT NULL DEFAULT 0,
    last_error text,
    last_attempt_at timestamptz,
    last_success_at timestamptz,
    next_attempt_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, provider, name)
);

-- 1 unit of base = rate units of quote, on that day; shared reference data, not tenant data
CREATE TABLE fx_rates (
    base char(3) NOT NULL CHECK (base ~ '^[A-Z]{{3}}$'),
    quote char(3) NOT NULL CHECK (quote ~ '^[A-Z]{{3}}$'),
    day date NOT NULL,
    rate double precision NOT NULL CHECK (rate > 0 AND rate < 'Infinity'),
    PRIMARY KEY (base, quote, day)
);

CREATE TABLE raw_records (
    workspace_id text NOT NULL REFERENCES workspaces ON DELETE CASCADE,
    source text NOT NULL,
    stream text NOT NULL,
    record_id text NOT NULL,
    payload jsonb NOT NULL,
    source_updated_at timestamptz,
    fetched_at timestamptz NOT NULL,
    run_id text,
    PRIMARY KEY (workspace_id, source, stream, record_id)
);

CREATE TABLE kpi_data (
    workspace_id text NOT NULL REFERENCES workspaces ON DELETE CASCADE,
    source text NOT NULL,
    metric text NOT NULL CHECK (metric ~ '^[a-z][a-z0-9_]*$'),
    "timestamp" timestamptz NOT NULL,
    dimensions_key text NOT NULL DEFAULT '',
    dimensions jsonb NOT NULL DEFAULT '{{}}',
    value double precision NOT NULL CHECK (value NOT IN ('NaN', 'Infinity', '-Infinity')),
    metadata jsonb NOT NULL DEFAULT '{{}}',
    -- when the provider last changed the value (else when it was fetched); orders writes
    source_ts timestamptz NOT NULL,
    origin text NOT NULL CHECK (origin IN ('sync', 'manual')),
    changed_by text NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY ({KPI_KEY})
);
CREATE INDEX kpi_data_metric_time ON kpi_data (workspace_id, metric, "timestamp");

CREATE TABLE sync_state (
    workspace_id text NOT NULL REFERENCES workspaces ON DELETE CASCADE,
    source text NOT NULL,
    stream text NOT NULL,
    cursor jsonb,
    last_sync_at timestamptz,
    PRIMARY KEY (workspace_id, source, stream)
);

CREATE TABLE manual_overrides (
    id bigserial PRIMARY KEY,
    workspace_id text NOT NULL REFERENCES workspaces ON DELETE CASCADE,
    source text NOT NULL,
    metric text NOT NULL,
    "timestamp" timestamptz NOT NULL,
    dimensions_key text NOT NULL DEFAULT '',
    value double precision NOT NULL,
    reason text,
    set_by text NOT NULL,
    set_at timestamptz NOT NULL DEFAULT now(),
    superseded_at timestamptz,
    superseded_by text
);
CREATE INDEX manual_overrides_open ON manual_overrides ({KPI_KEY}) WHERE superseded_at IS NULL;

CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    workspace_id text NOT NULL REFERENCES workspaces ON DELETE CASCADE,
    source text NOT NULL,
    metric text NOT NULL,
    "timestamp" timestamptz NOT NULL,
    dimensions_key text NOT NULL,
    action text NOT NULL CHECK (action IN ('insert', 'update', 'override', 'supersede')),
    old_value double precision,
    new_value double precision,
    actor text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_key ON audit_log ({KPI_KEY});

CREATE TABLE webhook_inbox (
    id bigserial PRIMARY KEY,
    provider text NOT NULL,
    event_id text NOT NULL,
    workspace_id text NOT NULL REFERENCES workspaces ON DELETE CASCADE,
    event_type text NOT NULL,
    payload jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz,
    run_key text,
    UNIQUE (provider, event_id)
);
CREATE INDEX webhook_inbox_unprocessed ON webhook_inbox (id) WHERE processed_at IS NULL;
"""

# The audit log is written by the database: no code path can change kpi_data unaudited.
# Statement-level triggers with transition tables keep bulk upserts fast (DESIGN.md).
AUDIT_SQL = f"""
CREATE FUNCTION audit_kpi_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = kpi, pg_catalog AS $$
BEGIN
    INSERT INTO audit_log ({KPI_KEY}, action, old_value, new_value, actor)
    SELECT {KPI_KEY},
           CASE WHEN origin = 'manual' THEN 'override' ELSE 'insert' END,
           NULL, value, changed_by
    FROM inserted_rows;
    RETURN NULL;
END $$;

CREATE FUNCTION audit_kpi_update() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = kpi, pg_catalog AS $$
BEGIN
    INSERT INTO audit_log ({KPI_KEY}, action, old_value, new_value, actor)
    SELECT n.workspace_id, n.source, n.metric, n."timestamp", n.dimensions_key,
           CASE WHEN n.origin = 'manual' THEN 'override'
                WHEN o.origin = 'manual' THEN 'supersede'
                ELSE 'update' END,
           o.value, n.value, n.changed_by
    FROM old_rows o
    JOIN new_rows n USING ({KPI_KEY});

    -- A sync that writes an overridden key supersedes the override.
    UPDATE manual_overrides m
    SET superseded_at = now(), superseded_by = n.changed_by
    FROM old_rows o
    JOIN new_rows n USING ({KPI_KEY})
    WHERE o.origin = 'manual' AND n.origin = 'sync' AND m.superseded_at IS NULL
      AND m.workspace_id = n.workspace_id AND m.source = n.source AND m.metric = n.metric
      AND m."timestamp" = n."timestamp" AND m.dimensions_key = n.dimensions_key;
    RETURN NULL;
END $$;

CREATE TRIGGER kpi_data_audit_insert AFTER INSERT ON kpi_data
    REFERENCING NEW TABLE AS inserted_rows
    FOR EACH STATEMENT EXECUTE FUNCTION audit_kpi_insert();
CREATE TRIGGER kpi_data_audit_update AFTER UPDATE ON kpi_data
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION audit_kpi_update();
"""


def _security_sql() -> str:
    statements = []
    for table in (*TENANT_TABLES, "workspaces", "connections", "webhook_inbox"):
        statements += [
            f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
            f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        ]
    for table in TENANT_TABLES:
        statements.append(
            f"CREATE POLICY workspace_isolation ON {table}"
            f" USING ({WORKSPACE_SCOPE}) WITH CHECK ({WORKSPACE_SCOPE})"
        )
    statements += [
        # The control plane: kpi_control across tenants, a tenant only its own rows.
        "CREATE POLICY control_plane ON workspaces TO kpi_control USING (true) WITH CHECK (true)",
        "CREATE POLICY own_workspace ON workspaces FOR SELECT"
        " USING (id = current_setting('kpi.workspace_id', true))",
        "CREATE POLICY control_plane ON connections TO kpi_control USING (true) WITH CHECK (true)",
        f"CREATE POLICY own_connections ON connections USING ({WORKSPACE_SCOPE})"
        f" WITH CHECK ({WORKSPACE_SCOPE})",
        "CREATE POLICY control_plane ON webhook_inbox TO kpi_control USING (true) WITH CHECK (true)",
        # Grants: what each role may do at all; the policies above then pick the rows.
        "GRANT SELECT, INSERT, UPDATE, DELETE ON workspaces, connections, webhook_inbox TO kpi_control",
        "GRANT SELECT, INSERT, UPDATE ON fx_rates TO kpi_control",
        "GRANT USAGE ON SEQUENCE connections_id_seq, webhook_inbox_id_seq TO kpi_control",
        "GRANT SELECT ON workspaces, fx_rates TO kpi_tenant",
        "GRANT SELECT, UPDATE ON connections TO kpi_tenant",
        "GRANT SELECT, INSERT, UPDATE, DELETE ON raw_records, sync_state TO kpi_tenant",
        "GRANT SELECT, INSERT, UPDATE ON kpi_data, manual_overrides TO kpi_tenant",
        "GRANT SELECT ON audit_log TO kpi_tenant",
        "GRANT USAGE ON SEQUENCE manual_overrides_id_seq TO kpi_tenant",
    ]
    return ";\n".join(statements) + ";"


def upgrade() -> None:
    op.execute(SCHEMA_SQL)
    op.execute(AUDIT_SQL)
    op.execute(_security_sql())


def downgrade() -> None:
    op.execute(
        "DROP TABLE webhook_inbox, audit_log, manual_overrides, sync_state, kpi_data,"
        " raw_records, fx_rates, connections, workspaces CASCADE;"
        " DROP FUNCTION audit_kpi_insert(), audit_kpi_update();"
    )
