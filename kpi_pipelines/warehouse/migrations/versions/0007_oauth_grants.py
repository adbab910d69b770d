"""OAuth grants kept encrypted in the warehouse, one per connection.

`kpi-pipelines connect` records the grant a workspace gave on its provider's consent page
(refresh token, access token and its expiry), and each refresh replaces it: a provider that
rotates its refresh tokens (Notion; Salesforce can) refuses the old one, so the current
grant must live where every run reads and updates it. `kpi.oauth_grants.sealed` holds it
as a Fernet token under the operator's key (`KPI_GRANT_KEYS`, never in the database): the
table holds no plaintext token.

Tenant data under FORCE'd row-level security on the proved scope (0004). The tenant role
holds no privilege on the table at all: it reads and writes grants only through these
SECURITY DEFINER functions of the owner (search_path pinned, every name
schema-qualified, EXECUTE for kpi_tenant only), which row-level security still scopes:

- `kpi.store_oauth_grant(connection_id, sealed)`: a new grant for a connection of the
  transaction's workspace (connect);
- `kpi.oauth_grant_for_update(connection_id)`: the grant and its version, its row locked
  until the transaction ends: two runs refreshing one grant at once take turns, and the
  second reads what the first wrote (a refresh token used twice would be refused);
- `kpi.replace_oauth_grant(connection_id, sealed, read_version)`: the refreshed (or
  re-encrypted) grant, only over the version read, in the same transaction;
- `kpi.oauth_grants_for_update()`: every grant of the workspace, locked (key rotation).

A grant belongs to its connection's workspace (a foreign key over both) and goes with it.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

DEFINER = "SECURITY DEFINER SET search_path = pg_catalog, pg_temp"
PROVED_SCOPE = "workspace_id = (SELECT kpi.current_workspace())"
# A Fernet token of a grant is a few hundred bytes; the bound keeps a bad caller small.
MAX_SEALED_BYTES = 65536

TABLE = f"""
ALTER TABLE kpi.connections ADD CONSTRAINT connections_id_workspace_key UNIQUE (id, workspace_id);

CREATE TABLE kpi.oauth_grants (
    connection_id bigint PRIMARY KEY,
    workspace_id text NOT NULL,
    provider text NOT NULL,
    -- the grant's JSON as a Fernet token under the operator's key; never plaintext
    sealed bytea NOT NULL
        CHECK (pg_catalog.octet_length(sealed) BETWEEN 1 AND {MAX_SEALED_BYTES}),
    -- one more on every change: what a replacement must have read
    version bigint NOT NULL DEFAULT 1,
    granted_by text NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_by text,
    updated_at timestamptz,
    FOREIGN KEY (connection_id, workspace_id)
        REFERENCES kpi.connections (id, workspace_id) ON DELETE CASCADE
);
ALTER TABLE kpi.oauth_grants ENABLE ROW LEVEL SECURITY;
ALTER TABLE kpi.oauth_grants FORCE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON kpi.oauth_grants
    USING ({PROVED_SCOPE}) WITH CHECK ({PROVED_SCOPE});
REVOKE ALL ON kpi.oauth_grants FROM PUBLIC;
"""

FUNCTIONS = f"""
CREATE FUNCTION kpi.store_oauth_grant(connection_id bigint, sealed bytea) RETURNS bigint
LANGUAGE plpgsql {DEFINER} AS $$
DECLARE
    actor text := kpi.transaction_actor();
    ws text := kpi.current_workspace();
    connection_provider text;
    stored bigint;
BEGIN
    -- row-level security shows the owner only the scoped workspace's connections
    SELECT c.provider INTO connection_provider FROM kpi.connections c
     WHERE c.id = store_oauth_grant.connection_id AND c.workspace_id = ws;
    IF connection_provider IS NULL THEN
        RAISE EXCEPTION 'connection % is not a connection of the transaction''s workspace',
            store_oauth_grant.connection_id USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO kpi.oauth_grants AS g (connection_id, workspace_id, provider, sealed, granted_by)
    VALUES (store_oauth_grant.connection_id, ws, connection_provider, store_oauth_grant.sealed,
            actor)
    ON CONFLICT ON CONSTRAINT oauth_grants_pkey DO UPDATE
    SET sealed = excluded.sealed, version = g.version + 1, provider = excluded.provider,
        granted_by = excluded.granted_by, granted_at = pg_catalog.now(),
        updated_by = NULL, updated_at = NULL
    RETURNING g.version INTO stored;
    RETURN stored;
END $$;

CREATE FUNCTION kpi.oauth_grant_for_update(connection_id bigint, OUT sealed bytea,
                                           OUT version bigint)
LANGUAGE plpgsql {DEFINER} AS $$
BEGIN
    PERFORM kpi.transaction_actor();
    SELECT g.sealed, g.version INTO oauth_grant_for_update.sealed, oauth_grant_for_update.version
      FROM kpi.oauth_grants g
     WHERE g.connection_id = oauth_grant_for_update.connection_id
       AND g.workspace_id = kpi.current_workspace()
       FOR UPDATE OF g;
END $$;

CREATE FUNCTION kpi.replace_oauth_grant(connection_id bigint, sealed bytea, read_version bigint)
RETURNS bigint
LANGUAGE plpgsql {DEFINER} AS $$
DECLARE
    actor text := kpi.transaction_actor();
    stored bigint;
BEGIN
    UPDATE kpi.oauth_grants g
       SET sealed = replace_oauth_grant.sealed, version = g.version + 1, updated_by = actor,
           updated_at = pg_catalog.now()
     WHERE g.connection_id = replace_oauth_grant.connection_id
       AND g.workspace_id = kpi.current_workspace()
       AND g.version = replace_oauth_grant.read_version
    RETURNING g.version INTO stored;
    IF stored IS NULL THEN
        RAISE EXCEPTION 'the OAuth grant of connection % changed since version % was read',
            replace_oauth_grant.connection_id, replace_oauth_grant.read_version
            USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN stored;
END $$;

CREATE FUNCTION kpi.oauth_grants_for_update(OUT connection_id bigint, OUT provider text,
                                            OUT sealed bytea, OUT version bigint)
RETURNS SETOF record
LANGUAGE plpgsql {DEFINER} AS $$
BEGIN
    PERFORM kpi.transaction_actor();
    RETURN QUERY
        SELECT g.connection_id, g.provider, g.sealed, g.version FROM kpi.oauth_grants g
         WHERE g.workspace_id = kpi.current_workspace()
         ORDER BY g.connection_id
           FOR UPDATE OF g;
END $$;
"""

SIGNATURES = (
    "kpi.store_oauth_grant(bigint, bytea)",
    "kpi.oauth_grant_for_update(bigint)",
    "kpi.replace_oauth_grant(bigint, bytea, bigint)",
    "kpi.oauth_grants_for_update()",
)


def upgrade() -> None:
    op.execute(TABLE)
    op.execute(FUNCTIONS)
    functions = ", ".join(SIGNATURES)
    op.execute(
        f"REVOKE EXECUTE ON FUNCTION {functions} FROM PUBLIC;"
        f" GRANT EXECUTE ON FUNCTION {functions} TO kpi_tenant;"
    )


def downgrade() -> None:
    op.execute(
        f"DROP FUNCTION {', '.join(SIGNATURES)};"
        " DROP TABLE kpi.oauth_grants;"
        " ALTER TABLE kpi.connections DROP CONSTRAINT connections_id_workspace_key;"
    )
