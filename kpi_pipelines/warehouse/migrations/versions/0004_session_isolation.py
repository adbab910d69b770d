"""A tenant session cannot choose its scope, its actor, or block other sessions.

- The scope is proved: `Warehouse.tenant()` sets `kpi.workspace_id` and `kpi.actor` with
  `kpi.scope_proof`, an HMAC-SHA256 of both and of the transaction's id under a key only the
  owner can read (`kpi.scope_key`). Row-level security and the audit actor read the scope
  through `kpi.proved_scope()`, so a session that sets either setting itself, or replays a
  proof in another transaction, sees no tenant row and can write none.
- The tenant role holds no INSERT, UPDATE or DELETE on a shared table, so it cannot take a
  lock that blocks another session (LOCK TABLE needs one of them; SELECT allows only ACCESS
  SHARE). Its writes go through SECURITY DEFINER functions of the owner, which row-level
  security still scopes (FORCE'd for the owner too): the merges of the write path read
  staging tables that only `kpi.open_*_stage()` makes (owned by the owner; the tenant may
  only INSERT into them), the cursor, the override and the mart have a function each.

Every name in these functions is schema-qualified and their search_path is
`pg_catalog, pg_temp`, as for the audit functions (0002).

Revision ID: 0004
Revises: 0003
"""

import hashlib
import secrets

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

KPI_KEY = 'workspace_id, source, metric, "timestamp", dimensions_key'
DEFINER = "SECURITY DEFINER SET search_path = pg_catalog, pg_temp"
TENANT_TABLES = ("raw_records", "kpi_data", "sync_state", "manual_overrides", "audit_log")
PROVED_SCOPE = "workspace_id = (SELECT kpi.current_workspace())"
WRITTEN_BY_FUNCTIONS = ("raw_records", "sync_state", "kpi_data", "manual_overrides", "kpi_mart")

# HMAC-SHA256 (RFC 2104) with the key's inner and outer pads kept beside it: PostgreSQL has
# sha256() built in but no XOR on bytea, and pgcrypto is not everywhere.
SCOPE_KEY = """
CREATE TABLE kpi.scope_key (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    key bytea NOT NULL,
    inner_pad bytea NOT NULL,
    outer_pad bytea NOT NULL
);
REVOKE ALL ON kpi.scope_key FROM PUBLIC;
"""

SCOPE_FUNCTIONS = f"""
CREATE FUNCTION kpi.proved_scope(OUT workspace_id text, OUT actor text)
LANGUAGE plpgsql STABLE {DEFINER} AS $$
DECLARE
    ws text := pg_catalog.current_setting('kpi.workspace_id', true);
    who text := pg_catalog.current_setting('kpi.actor', true);
    proof text := pg_catalog.current_setting('kpi.scope_proof', true);
    xact text := pg_catalog.pg_current_xact_id_if_assigned()::text;
    message bytea;
    expected text;
BEGIN
    IF ws = '' OR who = '' OR proof = '' OR xact IS NULL THEN
        RETURN;
    END IF;
    message := pg_catalog.convert_to(
        pg_catalog.concat_ws(':', pg_catalog.length(ws), ws, pg_catalog.length(who), who, xact),
        'UTF8');
    SELECT pg_catalog.encode(
               pg_catalog.sha256(k.outer_pad || pg_catalog.sha256(k.inner_pad || message)), 'hex')
      INTO expected FROM kpi.scope_key k;
    IF expected = proof THEN
        workspace_id := ws;
        actor := who;
    END IF;
END $$;

CREATE FUNCTION kpi.current_workspace() RETURNS text
LANGUAGE sql STABLE {DEFINER} AS $$ SELECT workspace_id FROM kpi.proved_scope() $$;

CREATE OR REPLACE FUNCTION kpi.transaction_actor() RETURNS text
LANGUAGE plpgsql STABLE {DEFINER} AS $$
DECLARE
    who text := (SELECT actor FROM kpi.proved_scope());
BEGIN
    IF who IS NULL THEN
        RAISE EXCEPTION 'tenant data changes only in a transaction scoped by the write path'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'kpi.workspace_id and kpi.actor are set only by Warehouse.tenant(),'
                         ' with a proof bound to the transaction';
    END IF;
    RETURN who;
END $$;
"""


def _stage_functions(name: str, columns: str) -> str:
    """`kpi.open_<name>()` makes (or empties) the session's staging table, owned by the owner
    so that the tenant can only INSERT into it; `kpi.<name>_is_ours()` is what the merge
    checks before it reads one (a table the tenant made could run its code as the owner)."""
    return f"""
CREATE FUNCTION kpi.{name}_is_ours() RETURNS void
LANGUAGE plpgsql STABLE {DEFINER} AS $$
BEGIN
    IF pg_catalog.to_regclass('pg_temp.{name}') IS NULL
       OR (SELECT c.relowner FROM pg_catalog.pg_class c
           WHERE c.oid = pg_catalog.to_regclass('pg_temp.{name}'))
          <> (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = current_user) THEN
        RAISE EXCEPTION 'pg_temp.{name} is not the write path''s staging table'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END $$;

CREATE FUNCTION kpi.open_{name}() RETURNS void
LANGUAGE plpgsql {DEFINER} AS $$
BEGIN
    PERFORM kpi.transaction_actor();
    IF pg_catalog.to_regclass('pg_temp.{name}') IS NULL THEN
        CREATE TEMP TABLE {name} ({columns}) ON COMMIT DROP;
        GRANT INSERT ON TABLE pg_temp.{name} TO kpi_tenant;
    ELSE
        PERFORM kpi.{name}_is_ours();
        TRUNCATE pg_temp.{name};
    END IF;
END $$;
"""


KPI_STAGE = (
    'workspace_id text, source text, metric text, "timestamp" timestamptz,'
    " dimensions_key text, dimensions jsonb, value float8, metadata jsonb, source_ts timestamptz"
)
RAW_STAGE = (
    "workspace_id text, source text, stream text, record_id text, payload jsonb,"
    " source_updated_at timestamptz"
)
KPI_COLUMNS = (
    'workspace_id, source, metric, "timestamp", dimensions_key, dimensions, value, metadata,'
    " source_ts"
)
RAW_COLUMNS = "workspace_id, source, stream, record_id, payload, source_updated_at"

WRITE_FUNCTIONS = f"""
-- A source overwrites its own value when the new one is not older and something changed; a
-- manual override is replaced by the source's next write of its key (see writer.py).
CREATE FUNCTION kpi.merge_kpi_stage(OUT inserted bigint, OUT updated bigint)
LANGUAGE plpgsql {DEFINER} AS $$
DECLARE
    actor text := kpi.transaction_actor();
BEGIN
    PERFORM kpi.kpi_stage_is_ours();
    WITH written AS (
        INSERT INTO kpi.kpi_data AS k ({KPI_COLUMNS}, origin, changed_by)
        SELECT DISTINCT ON ({KPI_KEY}) {KPI_COLUMNS}, 'sync', actor
        FROM pg_temp.kpi_stage
        -- a batch may carry a key twice (an event and a later re-read): keep the newest
        ORDER BY {KPI_KEY}, source_ts DESC
        ON CONFLICT ({KPI_KEY}) DO UPDATE
        SET value = excluded.value, dimensions = excluded.dimensions,
            metadata = excluded.metadata, source_ts = excluded.source_ts, origin = 'sync',
            changed_by = excluded.changed_by, changed_at = pg_catalog.now()
        WHERE k.origin = 'manual'
           OR (excluded.source_ts >= k.source_ts
               AND (k.value IS DISTINCT FROM excluded.value
                    OR k.metadata IS DISTINCT FROM excluded.metadata))
        RETURNING k.xmax = 0 AS was_inserted
    )
    SELECT pg_catalog.count(*) FILTER (WHERE was_inserted),
           pg_catalog.count(*) FILTER (WHERE NOT was_inserted)
      INTO inserted, updated FROM written;
END $$;

-- Last write wins unless the stored copy is newer; an unchanged copy is not rewritten.
CREATE FUNCTION kpi.merge_raw_stage(fetched_at timestamptz) RETURNS bigint
LANGUAGE plpgsql {DEFINER} AS $$
DECLARE
    actor text := kpi.transaction_actor();
    written bigint;
BEGIN
    PERFORM kpi.raw_stage_is_ours();
    INSERT INTO kpi.raw_records AS r ({RAW_COLUMNS}, fetched_at, run_id)
    SELECT {RAW_COLUMNS}, merge_raw_stage.fetched_at, actor FROM pg_temp.raw_stage
    ON CONFLICT (workspace_id, source, stream, record_id) DO UPDATE
    SET payload = excluded.payload, source_updated_at = excluded.source_updated_at,
        fetched_at = excluded.fetched_at, run_id = excluded.run_id
    WHERE r.payload IS DISTINCT FROM excluded.payload
      AND (excluded.source_updated_at IS NULL OR r.source_updated_at IS NULL
           OR excluded.source_updated_at >= r.source_updated_at);
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END $$;

CREATE FUNCTION kpi.save_cursor(source text, stream text, cursor jsonb) RETURNS void
LANGUAGE plpgsql {DEFINER} AS $$
BEGIN
    PERFORM kpi.transaction_actor();
    INSERT INTO kpi.sync_state AS s (workspace_id, source, stream, cursor, last_sync_at)
    VALUES (kpi.current_workspace(), save_cursor.source, save_cursor.stream,
            save_cursor.cursor, pg_catalog.now())
    ON CONFLICT ON CONSTRAINT sync_state_pkey
    DO UPDATE SET cursor = excluded.cursor, last_sync_at = excluded.last_sync_at;
END $$;

-- A user's value for one key: it replaces an open override of the same key, and stands in
-- kpi_data until the source's next sync writes that key (the audit trigger supersedes it).
CREATE FUNCTION kpi.set_override(
    source text, metric text, ts timestamptz, dimensions_key text, dimensions jsonb,
    value float8, metadata jsonb, reason text
) RETURNS void
LANGUAGE plpgsql {DEFINER} AS $$
DECLARE
    actor text := kpi.transaction_actor();
    ws text := kpi.current_workspace();
BEGIN
    UPDATE kpi.manual_overrides m SET superseded_at = pg_catalog.now(), superseded_by = actor
    WHERE m.superseded_at IS NULL AND m.workspace_id = ws AND m.source = set_override.source
      AND m.metric = set_override.metric AND m."timestamp" = set_override.ts
      AND m.dimensions_key = set_override.dimensions_key;
    INSERT INTO kpi.manual_overrides
        (workspace_id, source, metric, "timestamp", dimensions_key, value, reason, set_by)
    VALUES (ws, set_override.source, set_override.metric, set_override.ts,
            set_override.dimensions_key, set_override.value, set_override.reason, actor);
    INSERT INTO kpi.kpi_data AS k
        (workspace_id, source, metric, "timestamp", dimensions_key, dimensions, value,
         metadata, source_ts, origin, changed_by)
    VALUES (ws, set_override.source, set_override.metric, set_override.ts,
            set_override.dimensions_key, set_override.dimensions, set_override.value,
            set_override.metadata, pg_catalog.now(), 'manual', actor)
    ON CONFLICT ON CONSTRAINT kpi_data_pkey DO UPDATE
    SET value = excluded.value, source_ts = pg_catalog.now(), origin = 'manual',
        changed_by = excluded.changed_by, changed_at = pg_catalog.now();
END $$;

-- The workspace's mart rows become exactly these (one per day).
CREATE FUNCTION kpi.replace_mart(days date[], metrics jsonb[]) RETURNS bigint
LANGUAGE plpgsql {DEFINER} AS $$
DECLARE
    ws text := kpi.current_workspace();
    written bigint;
BEGIN
    PERFORM kpi.transaction_actor();
    DELETE FROM kpi.kpi_mart WHERE workspace_id = ws;
    INSERT INTO kpi.kpi_mart (workspace_id, day, metrics)
    SELECT ws, d.day, d.metrics FROM ROWS FROM (pg_catalog.unnest(replace_mart.days), pg_catalog.unnest(replace_mart.metrics))
        AS d(day, metrics);
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END $$;
"""

WRITE_FUNCTION_SIGNATURES = (
    "kpi.open_kpi_stage()",
    "kpi.open_raw_stage()",
    "kpi.merge_kpi_stage()",
    "kpi.merge_raw_stage(timestamptz)",
    "kpi.save_cursor(text, text, jsonb)",
    "kpi.set_override(text, text, timestamptz, text, jsonb, float8, jsonb, text)",
    "kpi.replace_mart(date[], jsonb[])",
)
# Called by the policies and by the functions above, as whoever runs the statement.
SCOPE_FUNCTION_SIGNATURES = (
    "kpi.proved_scope()",
    "kpi.current_workspace()",
    "kpi.transaction_actor()",
    "kpi.kpi_stage_is_ours()",
    "kpi.raw_stage_is_ours()",
)


def _policies(scope: str) -> str:
    statements = [
        f"DROP POLICY workspace_isolation ON kpi.{table};"
        f" CREATE POLICY workspace_isolation ON kpi.{table} USING ({scope}) WITH CHECK ({scope});"
        for table in (*TENANT_TABLES, "kpi_mart")
    ]
    statements += [
        "DROP POLICY own_workspace ON kpi.workspaces;"
        " CREATE POLICY own_workspace ON kpi.workspaces FOR SELECT"
        f" USING ({scope.replace('workspace_id =', 'id =')});",
        "DROP POLICY own_connections ON kpi.connections;"
        f" CREATE POLICY own_connections ON kpi.connections USING ({scope}) WITH CHECK ({scope});",
    ]
    return "\n".join(statements)


def _new_scope_key() -> dict[str, bytes]:
    key = secrets.token_bytes(32)
    block = key.ljust(hashlib.sha256().block_size, b"\0")
    return {
        "key": key,
        "inner": bytes(b ^ 0x36 for b in block),
        "outer": bytes(b ^ 0x5C for b in block),
    }


def upgrade() -> None:
    op.execute(SCOPE_KEY)
    op.get_bind().execute(
        sa.text(
            "INSERT INTO kpi.scope_key (key, inner_pad, outer_pad) VALUES (:key, :inner, :outer)"
        ),
        _new_scope_key(),
    )
    op.execute(SCOPE_FUNCTIONS)
    op.execute(_stage_functions("kpi_stage", KPI_STAGE))
    op.execute(_stage_functions("raw_stage", RAW_STAGE))
    op.execute(WRITE_FUNCTIONS)
    op.execute(_policies(PROVED_SCOPE))
    functions = ", ".join((*WRITE_FUNCTION_SIGNATURES, *SCOPE_FUNCTION_SIGNATURES))
    op.execute(
        f"REVOKE EXECUTE ON FUNCTION {functions} FROM PUBLIC;"
        f" GRANT EXECUTE ON FUNCTION {', '.join(WRITE_FUNCTION_SIGNATURES)} TO kpi_tenant;"
        f" GRANT EXECUTE ON FUNCTION {', '.join(SCOPE_FUNCTION_SIGNATURES)}"
        " TO kpi_tenant, kpi_control;"
        f" REVOKE INSERT, UPDATE, DELETE ON {', '.join(f'kpi.{t}' for t in WRITTEN_BY_FUNCTIONS)}"
        " FROM kpi_tenant;"
        " REVOKE USAGE ON SEQUENCE kpi.manual_overrides_id_seq FROM kpi_tenant;"
    )


def downgrade() -> None:
    op.execute(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON kpi.raw_records, kpi.sync_state, kpi.kpi_mart"
        " TO kpi_tenant;"
        " GRANT SELECT, INSERT, UPDATE ON kpi.kpi_data, kpi.manual_overrides TO kpi_tenant;"
        " GRANT USAGE ON SEQUENCE kpi.manual_overrides_id_seq TO kpi_tenant;"
    )
    op.execute(_policies("workspace_id = current_setting('kpi.workspace_id', true)"))
    op.execute(
        "DROP FUNCTION "
        + ", ".join(
            (*WRITE_FUNCTION_SIGNATURES, "kpi.kpi_stage_is_ours()", "kpi.raw_stage_is_ours()")
        )
        + ";"
    )
    from alembic import context

    actor = context.script.get_revision("0002").module.ACTOR_FUNCTION
    op.execute(actor.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))
    op.execute(
        "DROP FUNCTION kpi.current_workspace(), kpi.proved_scope(); DROP TABLE kpi.scope_key;"
    )
