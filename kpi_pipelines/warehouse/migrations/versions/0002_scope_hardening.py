"""Close the ways around row-level security found by an adversarial review.

- The audit functions run as the owner (SECURITY DEFINER): every name in them is
  schema-qualified and their search_path is `pg_catalog, pg_temp`, so a tenant session's
  temporary table can neither capture their writes nor run its triggers as the owner.
- The audit actor is the transaction's scope (`kpi.actor`, set by the write path), never a
  column a writer fills in; kpi_data.changed_by must agree with it.
- Webhook events are deduplicated per workspace (one workspace's event id never drops
  another's event).
- The tenant role may update only the health columns of connections.
- Workspace ids are prefix-safe for their secret namespace (`WS_<ID>__`): no two
  workspaces share a namespace, and none is a prefix of another's.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

KPI_KEY = 'workspace_id, source, metric, "timestamp", dimensions_key'
HEALTH_COLUMNS = (
    "consecutive_failures, last_error, last_attempt_at, last_success_at, next_attempt_at"
)

# Not SECURITY DEFINER: runs as the caller, and only reads a setting.
ACTOR_FUNCTION = """
CREATE FUNCTION kpi.transaction_actor() RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    actor text := current_setting('kpi.actor', true);
BEGIN
    IF actor IS NULL OR actor = '' THEN
        RAISE EXCEPTION 'kpi_data changes only in a transaction scoped by the write path'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'kpi.actor (the run or user making the change) is not set';
    END IF;
    RETURN actor;
END $$;
"""


def _actor_check(rows: str) -> str:
    """The statement's rows must name the transaction's actor as their writer."""
    return f"""    IF EXISTS (SELECT 1 FROM {rows} r WHERE r.changed_by IS DISTINCT FROM actor) THEN
        RAISE EXCEPTION 'kpi_data.changed_by must be the transaction''s actor %', actor
            USING ERRCODE = 'insufficient_privilege';
    END IF;"""


AUDIT_FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION kpi.audit_kpi_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    actor text := kpi.transaction_actor();
BEGIN
{_actor_check("inserted_rows")}
    INSERT INTO kpi.audit_log ({KPI_KEY}, action, old_value, new_value, actor)
    SELECT r.workspace_id, r.source, r.metric, r."timestamp", r.dimensions_key,
           CASE WHEN r.origin = 'manual' THEN 'override' ELSE 'insert' END,
           NULL, r.value, actor
    FROM inserted_rows r;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION kpi.audit_kpi_update() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    actor text := kpi.transaction_actor();
BEGIN
{_actor_check("new_rows")}
    INSERT INTO kpi.audit_log ({KPI_KEY}, action, old_value, new_value, actor)
    SELECT n.workspace_id, n.source, n.metric, n."timestamp", n.dimensions_key,
           CASE WHEN n.origin = 'manual' THEN 'override'
                WHEN o.origin = 'manual' THEN 'supersede'
                ELSE 'update' END,
           o.value, n.value, actor
    FROM old_rows o
    JOIN new_rows n USING ({KPI_KEY});

    -- A sync that writes an overridden key supersedes the override.
    UPDATE kpi.manual_overrides m
    SET superseded_at = pg_catalog.now(), superseded_by = actor
    FROM old_rows o
    JOIN new_rows n USING ({KPI_KEY})
    WHERE o.origin = 'manual' AND n.origin = 'sync' AND m.superseded_at IS NULL
      AND m.workspace_id = n.workspace_id AND m.source = n.source AND m.metric = n.metric
      AND m."timestamp" = n."timestamp" AND m.dimensions_key = n.dimensions_key;
    RETURN NULL;
END $$;
"""

# Secret namespaces are WS_<id upper-cased, '-' as '_'>__: ids whose namespaces could
# collide or nest are refused (existing ones are left alone: they just cannot name secrets).
PREFIX_SAFE_ID = "^[a-z0-9]+([_-][a-z0-9]+)*$"


def upgrade() -> None:
    op.execute(ACTOR_FUNCTION)
    op.execute(AUDIT_FUNCTIONS)
    op.execute(
        "ALTER TABLE kpi.kpi_data ALTER COLUMN changed_by SET DEFAULT kpi.transaction_actor();"
        " ALTER TABLE kpi.manual_overrides ALTER COLUMN set_by"
        " SET DEFAULT kpi.transaction_actor();"
    )
    op.execute(
        "ALTER TABLE kpi.webhook_inbox DROP CONSTRAINT webhook_inbox_provider_event_id_key;"
        " ALTER TABLE kpi.webhook_inbox ADD CONSTRAINT webhook_inbox_workspace_event_key"
        " UNIQUE (provider, workspace_id, event_id);"
    )
    op.execute(
        "REVOKE UPDATE ON kpi.connections FROM kpi_tenant;"
        f" GRANT UPDATE ({HEALTH_COLUMNS}) ON kpi.connections TO kpi_tenant;"
    )
    op.execute(
        f"ALTER TABLE kpi.workspaces ADD CONSTRAINT workspaces_id_prefix_safe"
        f" CHECK (id ~ '{PREFIX_SAFE_ID}') NOT VALID;"
        " CREATE UNIQUE INDEX workspaces_secret_namespace"
        " ON kpi.workspaces (upper(translate(id, '-', '_')));"
    )


def downgrade() -> None:
    op.execute(
        "DROP INDEX kpi.workspaces_secret_namespace;"
        " ALTER TABLE kpi.workspaces DROP CONSTRAINT workspaces_id_prefix_safe;"
        f" REVOKE UPDATE ({HEALTH_COLUMNS}) ON kpi.connections FROM kpi_tenant;"
        " GRANT UPDATE ON kpi.connections TO kpi_tenant;"
        " ALTER TABLE kpi.webhook_inbox DROP CONSTRAINT webhook_inbox_workspace_event_key;"
        " ALTER TABLE kpi.webhook_inbox ADD CONSTRAINT webhook_inbox_provider_event_id_key"
        " UNIQUE (provider, event_id);"
        " ALTER TABLE kpi.kpi_data ALTER COLUMN changed_by DROP DEFAULT;"
        " ALTER TABLE kpi.manual_overrides ALTER COLUMN set_by DROP DEFAULT;"
    )
    op.execute(_initial_audit_functions())
    op.execute("DROP FUNCTION kpi.transaction_actor();")


def _initial_audit_functions() -> str:
    """0001's audit functions as they were (its triggers still point at them)."""
    from alembic import context

    initial = context.script.get_revision("0001").module
    functions = initial.AUDIT_SQL.split("CREATE TRIGGER")[0]
    return "SET LOCAL search_path = kpi, pg_catalog;" + functions.replace(
        "CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"
    )
