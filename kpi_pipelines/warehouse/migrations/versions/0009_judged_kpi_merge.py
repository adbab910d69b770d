"""The KPI merge judges the staged rows against the stored ones before it writes.

`kpi.merge_kpi_stage()` (0004) sent every staged row through one `INSERT ... ON CONFLICT DO
UPDATE ... WHERE`: a row that changed nothing was still locked (a WAL record and a dirtied
page each), and every new row paid for the speculative insertion. Now:

- it first tries a plain INSERT of the staged rows, which is all a first load needs; the
  first row whose key is stored (in a re-write, the very first row) ends the attempt with
  unique_violation, and it is rolled back;
- then it reads the stored row of each staged key (one index probe each, nothing locked)
  and collects the rows with a new key and those that would change their stored row: when
  there are none (an identical re-write) no statement writes and no trigger runs;
- else an UPDATE of the keys whose newest staged row changes something, under the same
  conditions as the upsert's WHERE (re-checked on the row as it stands when it is locked),
  then an INSERT of the new keys.

A new key twice in the batch, or a key another transaction inserted since it was read,
raises unique_violation in that last step: it is rolled back and the upsert of 0004 does the
batch instead, so the outcome is the upsert's in every case. The rows written, their audit
rows (the statement-level triggers of 0001/0002, unchanged) and the counts returned are the
same; the guards (`kpi.transaction_actor()`, `kpi.kpi_stage_is_ours()`), the owner's rights,
the search_path and row-level security are those of 0004.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

KPI_KEY = 'workspace_id, source, metric, "timestamp", dimensions_key'
KPI_COLUMNS = (
    'workspace_id, source, metric, "timestamp", dimensions_key, dimensions, value, metadata,'
    " source_ts"
)
DEFINER = "SECURITY DEFINER SET search_path = pg_catalog, pg_temp"


def _same_key(stored: str, staged: str) -> str:
    return " AND ".join(
        f"{stored}.{column} = {staged}.{column}"
        for column in ("workspace_id", "source", "metric", '"timestamp"', "dimensions_key")
    )


def _changes(stored: str, staged: str) -> str:
    """The upsert's conflict resolution (writer.py): does the staged row replace the stored?"""
    return (
        f"({stored}.origin = 'manual' OR ({staged}.source_ts >= {stored}.source_ts"
        f" AND ({stored}.value IS DISTINCT FROM {staged}.value"
        f" OR {stored}.metadata IS DISTINCT FROM {staged}.metadata)))"
    )


SYNC_WRITE = (
    "value = {new}.value, dimensions = {new}.dimensions, metadata = {new}.metadata,"
    " source_ts = {new}.source_ts, origin = 'sync', changed_by = {actor},"
    " changed_at = pg_catalog.now()"
)

MERGE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION kpi.merge_kpi_stage(OUT inserted bigint, OUT updated bigint)
LANGUAGE plpgsql {DEFINER} AS $$
DECLARE
    actor text := kpi.transaction_actor();
    -- the staging table's rows (ctid: the table is this transaction's own) to insert, and
    -- those that would change their stored row
    fresh tid[];
    changing tid[];
    hash_join text;
    merge_join text;
    materialize text;
BEGIN
    PERFORM kpi.kpi_stage_is_ours();
    inserted := 0;
    updated := 0;
    -- A first load, where every key is new, needs no judging: it is tried first, as a plain
    -- INSERT. The first staged row whose key is stored (in a re-write, the very first row)
    -- ends the attempt, which is rolled back, and the rows are judged instead.
    BEGIN
        INSERT INTO kpi.kpi_data ({KPI_COLUMNS}, origin, changed_by)
        SELECT {KPI_COLUMNS}, 'sync', actor FROM pg_temp.kpi_stage;
        GET DIAGNOSTICS inserted = ROW_COUNT;
        RETURN;
    EXCEPTION WHEN unique_violation THEN
        NULL;
    END;
    -- One index probe per staged row: the planner, which knows neither the staging table's
    -- size nor, before the first ANALYZE, the workspace's, would otherwise hash (or scan
    -- again per staged row) every stored row of the workspace. Off for this statement only.
    hash_join := pg_catalog.current_setting('enable_hashjoin');
    merge_join := pg_catalog.current_setting('enable_mergejoin');
    materialize := pg_catalog.current_setting('enable_material');
    PERFORM pg_catalog.set_config('enable_hashjoin', 'off', true),
            pg_catalog.set_config('enable_mergejoin', 'off', true),
            pg_catalog.set_config('enable_material', 'off', true);
    SELECT pg_catalog.array_agg(s.ctid) FILTER (WHERE k.origin IS NULL),
           pg_catalog.array_agg(s.ctid) FILTER (WHERE {_changes("k", "s")})
      INTO fresh, changing
      FROM pg_temp.kpi_stage s LEFT JOIN kpi.kpi_data k ON {_same_key("k", "s")};
    PERFORM pg_catalog.set_config('enable_hashjoin', hash_join, true),
            pg_catalog.set_config('enable_mergejoin', merge_join, true),
            pg_catalog.set_config('enable_material', materialize, true);
    IF fresh IS NULL AND changing IS NULL THEN
        RETURN;
    END IF;
    BEGIN
        IF changing IS NOT NULL THEN
            WITH touched AS (
                SELECT DISTINCT {KPI_KEY} FROM pg_temp.kpi_stage
                WHERE ctid = ANY (changing)
            ), newest AS MATERIALIZED (
                -- a batch may carry a key twice (an event and a later re-read): the newest
                SELECT DISTINCT ON ({KPI_KEY}) s.*
                FROM pg_temp.kpi_stage s
                JOIN touched t USING ({KPI_KEY})
                ORDER BY {KPI_KEY}, s.source_ts DESC
            )
            UPDATE kpi.kpi_data k SET {SYNC_WRITE.format(new="n", actor="actor")}
            FROM newest n
            WHERE {_same_key("k", "n")} AND {_changes("k", "n")};
            GET DIAGNOSTICS updated = ROW_COUNT;
        END IF;
        IF fresh IS NOT NULL THEN
            INSERT INTO kpi.kpi_data ({KPI_COLUMNS}, origin, changed_by)
            SELECT {KPI_COLUMNS}, 'sync', actor FROM pg_temp.kpi_stage WHERE ctid = ANY (fresh);
            GET DIAGNOSTICS inserted = ROW_COUNT;
        END IF;
    EXCEPTION WHEN unique_violation THEN
        -- a new key twice in the batch, or inserted by another transaction since the count:
        -- the upsert resolves both (this block's writes and their audit rows are undone)
        WITH written AS (
            INSERT INTO kpi.kpi_data AS k ({KPI_COLUMNS}, origin, changed_by)
            SELECT DISTINCT ON ({KPI_KEY}) {KPI_COLUMNS}, 'sync', actor
            FROM pg_temp.kpi_stage
            ORDER BY {KPI_KEY}, source_ts DESC
            ON CONFLICT ({KPI_KEY}) DO UPDATE
            SET {SYNC_WRITE.format(new="excluded", actor="excluded.changed_by")}
            WHERE {_changes("k", "excluded")}
            RETURNING k.xmax = 0 AS was_inserted
        )
        SELECT pg_catalog.count(*) FILTER (WHERE was_inserted),
               pg_catalog.count(*) FILTER (WHERE NOT was_inserted)
          INTO inserted, updated FROM written;
    END;
END $$;
"""


def upgrade() -> None:
    op.execute(MERGE_FUNCTION)


def downgrade() -> None:
    """0004's upsert (the function keeps its owner, grants and signature)."""
    from alembic import context

    functions = context.script.get_revision("0004").module.WRITE_FUNCTIONS
    merge = functions.split("CREATE FUNCTION kpi.merge_raw_stage")[0]
    op.execute(merge.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))
