"""Notes: the plain text of each objective's page and of the note pages related to it.

`kpi.notes` is tenant data: one row per (source, page, objective) with the page's title,
text, url and last edited time, for a dashboard to show beside the objective (notes are
not KPIs). Row-level security is FORCE'd and compares workspace_id with the proved scope,
as on every tenant table (0004). The tenant role may only read it: its writes are the
owner's SECURITY DEFINER functions `kpi.save_notes()` (insert, or rewrite a note whose
page was edited) and `kpi.drop_notes()` (remove the notes no longer wanted), which
schema-qualify every name, run with `search_path = pg_catalog, pg_temp`, take the
workspace from `kpi.current_workspace()` and refuse a transaction the write path did not
scope (`kpi.transaction_actor()`); row-level security still holds them to the scope.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

DEFINER = "SECURITY DEFINER SET search_path = pg_catalog, pg_temp"
PROVED_SCOPE = "workspace_id = (SELECT kpi.current_workspace())"
# A note's text is bounded by the writer (notes.py); these are the table's backstops.
MAX_TEXT = 1_000_000
MAX_TITLE = 2_000
FUNCTIONS = (
    "kpi.save_notes(text, text[], text[], text[], text[], text[], text[], timestamptz[])",
    "kpi.drop_notes(text, text[], text[])",
)

UPGRADE = f"""
CREATE TABLE kpi.notes (
    workspace_id text NOT NULL REFERENCES kpi.workspaces ON DELETE CASCADE,
    source text NOT NULL,
    page_id text NOT NULL,
    objective_id text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('objective', 'note')),
    title text NOT NULL CHECK (length(title) <= {MAX_TITLE}),
    text text NOT NULL CHECK (length(text) <= {MAX_TEXT}),
    url text CHECK (length(url) <= 2000),
    last_edited_time timestamptz NOT NULL,
    synced_at timestamptz NOT NULL DEFAULT now(),
    synced_by text NOT NULL,
    PRIMARY KEY (workspace_id, source, page_id, objective_id)
);
CREATE INDEX notes_objective ON kpi.notes (workspace_id, source, objective_id);
ALTER TABLE kpi.notes ENABLE ROW LEVEL SECURITY;
ALTER TABLE kpi.notes FORCE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON kpi.notes
    USING ({PROVED_SCOPE}) WITH CHECK ({PROVED_SCOPE});
GRANT SELECT ON kpi.notes TO kpi_tenant;

-- Insert each note, or rewrite it when its page was edited (its text, title or url
-- changed): an unchanged note is left as it is. Returns the notes written.
CREATE FUNCTION kpi.save_notes(
    source text, page_ids text[], objective_ids text[], kinds text[], titles text[],
    texts text[], urls text[], edited timestamptz[]
) RETURNS bigint
LANGUAGE plpgsql {DEFINER} AS $$
DECLARE
    actor text := kpi.transaction_actor();
    ws text := kpi.current_workspace();
    rows_given integer := pg_catalog.cardinality(save_notes.page_ids);
    written bigint;
BEGIN
    IF rows_given IS DISTINCT FROM pg_catalog.cardinality(save_notes.objective_ids)
       OR rows_given IS DISTINCT FROM pg_catalog.cardinality(save_notes.kinds)
       OR rows_given IS DISTINCT FROM pg_catalog.cardinality(save_notes.titles)
       OR rows_given IS DISTINCT FROM pg_catalog.cardinality(save_notes.texts)
       OR rows_given IS DISTINCT FROM pg_catalog.cardinality(save_notes.urls)
       OR rows_given IS DISTINCT FROM pg_catalog.cardinality(save_notes.edited) THEN
        RAISE EXCEPTION 'kpi.save_notes needs as many of each field as notes'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO kpi.notes AS n (workspace_id, source, page_id, objective_id, kind, title,
                                text, url, last_edited_time, synced_by)
    SELECT ws, save_notes.source, d.page_id, d.objective_id, d.kind, d.title, d.text, d.url,
           d.edited, actor
    FROM ROWS FROM (pg_catalog.unnest(save_notes.page_ids),
                    pg_catalog.unnest(save_notes.objective_ids),
                    pg_catalog.unnest(save_notes.kinds), pg_catalog.unnest(save_notes.titles),
                    pg_catalog.unnest(save_notes.texts), pg_catalog.unnest(save_notes.urls),
                    pg_catalog.unnest(save_notes.edited))
         AS d(page_id, objective_id, kind, title, text, url, edited)
    ON CONFLICT ON CONSTRAINT notes_pkey DO UPDATE
    SET kind = excluded.kind, title = excluded.title, text = excluded.text, url = excluded.url,
        last_edited_time = excluded.last_edited_time, synced_at = pg_catalog.now(),
        synced_by = excluded.synced_by
    WHERE n.last_edited_time IS DISTINCT FROM excluded.last_edited_time
       OR n.text IS DISTINCT FROM excluded.text
       OR n.title IS DISTINCT FROM excluded.title
       OR n.url IS DISTINCT FROM excluded.url
       OR n.kind IS DISTINCT FROM excluded.kind;
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END $$;

-- Remove the notes of these (page, objective) pairs. Returns how many were removed.
CREATE FUNCTION kpi.drop_notes(source text, page_ids text[], objective_ids text[])
RETURNS bigint
LANGUAGE plpgsql {DEFINER} AS $$
DECLARE
    ws text := kpi.current_workspace();
    removed bigint;
BEGIN
    PERFORM kpi.transaction_actor();
    IF pg_catalog.cardinality(drop_notes.page_ids)
       IS DISTINCT FROM pg_catalog.cardinality(drop_notes.objective_ids) THEN
        RAISE EXCEPTION 'kpi.drop_notes needs one objective per page'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    DELETE FROM kpi.notes n
    USING ROWS FROM (pg_catalog.unnest(drop_notes.page_ids),
                     pg_catalog.unnest(drop_notes.objective_ids)) AS d(page_id, objective_id)
    WHERE n.workspace_id = ws AND n.source = drop_notes.source
      AND n.page_id = d.page_id AND n.objective_id = d.objective_id;
    GET DIAGNOSTICS removed = ROW_COUNT;
    RETURN removed;
END $$;

REVOKE EXECUTE ON FUNCTION {", ".join(FUNCTIONS)} FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {", ".join(FUNCTIONS)} TO kpi_tenant;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {', '.join(FUNCTIONS)}; DROP TABLE kpi.notes;")
