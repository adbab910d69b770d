"""A raw merge tries a plain INSERT of the staged records first.

`kpi.merge_raw_stage()` (0004) sent every staged record through `INSERT ... ON CONFLICT DO
UPDATE ... WHERE`, whose speculative insertion (a token and a confirmation WAL record per
row) a first load, where every record is new, never needs: about 8% of the server's time
of a Stripe landing. Now it first tries a plain INSERT; the first staged record whose key is
stored (in a re-read, the very first) ends the attempt with unique_violation, it is rolled
back, and the upsert of 0004 does the batch as before. A record twice in one batch also
ends the attempt, and the upsert then refuses the batch as it always did. The records
written and the count returned are the same in every case; the function keeps 0004's
owner, grants, guard (`kpi.raw_stage_is_ours()`), actor and search_path.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

DEFINER = "SECURITY DEFINER SET search_path = pg_catalog, pg_temp"
RAW_COLUMNS = "workspace_id, source, stream, record_id, payload, source_updated_at"

MERGE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION kpi.merge_raw_stage(fetched_at timestamptz) RETURNS bigint
LANGUAGE plpgsql {DEFINER} AS $$
DECLARE
    actor text := kpi.transaction_actor();
    written bigint;
BEGIN
    PERFORM kpi.raw_stage_is_ours();
    BEGIN
        INSERT INTO kpi.raw_records ({RAW_COLUMNS}, fetched_at, run_id)
        SELECT {RAW_COLUMNS}, merge_raw_stage.fetched_at, actor FROM pg_temp.raw_stage;
        GET DIAGNOSTICS written = ROW_COUNT;
        RETURN written;
    EXCEPTION WHEN unique_violation THEN
        NULL;  -- a stored key, or one twice in the batch: the upsert decides
    END;
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
"""


def upgrade() -> None:
    op.execute(MERGE_FUNCTION)


def downgrade() -> None:
    """0004's upsert alone (the function keeps its owner, grants and signature)."""
    from alembic import context

    functions = context.script.get_revision("0004").module.WRITE_FUNCTIONS
    merge = (
        "CREATE FUNCTION kpi.merge_raw_stage"
        + functions.split("CREATE FUNCTION kpi.merge_raw_stage")[1].split("CREATE FUNCTION")[0]
    )
    op.execute(merge.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))
