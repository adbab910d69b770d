"""The KPI mart shows each metric's breakdowns beside its totals.

`kpi.kpi_mart.breakdowns` holds, per day, each metric's breakdowns
(`{"signups": [{"dimensions": {"Team": "growth"}, "value": 30}, ...]}`); `metrics` keeps
the totals, so what a dashboard already reads does not change. The mart is still written
only through the owner's `kpi.replace_mart()`, now with the breakdowns: a SECURITY DEFINER
function with its search_path pinned and every name schema-qualified, as in 0004, that only
the tenant role may execute (the tenant holds no INSERT, UPDATE or DELETE on the table).

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

DEFINER = "SECURITY DEFINER SET search_path = pg_catalog, pg_temp"
REPLACE_MART = "kpi.replace_mart(date[], jsonb[], jsonb[])"
PREVIOUS_REPLACE_MART = "kpi.replace_mart(date[], jsonb[])"

UPGRADE = f"""
ALTER TABLE kpi.kpi_mart
    ADD COLUMN breakdowns jsonb NOT NULL DEFAULT '{{}}'
        CHECK (pg_catalog.jsonb_typeof(breakdowns) = 'object');

DROP FUNCTION {PREVIOUS_REPLACE_MART};

-- The workspace's mart rows become exactly these (one per day).
CREATE FUNCTION kpi.replace_mart(days date[], metrics jsonb[], breakdowns jsonb[])
RETURNS bigint
LANGUAGE plpgsql {DEFINER} AS $$
DECLARE
    ws text := kpi.current_workspace();
    written bigint;
BEGIN
    PERFORM kpi.transaction_actor();
    IF pg_catalog.cardinality(replace_mart.days) <> pg_catalog.cardinality(replace_mart.metrics)
       OR pg_catalog.cardinality(replace_mart.days)
          <> pg_catalog.cardinality(replace_mart.breakdowns) THEN
        RAISE EXCEPTION 'kpi.replace_mart needs one metrics and one breakdowns object per day'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    DELETE FROM kpi.kpi_mart WHERE workspace_id = ws;
    INSERT INTO kpi.kpi_mart (workspace_id, day, metrics, breakdowns)
    SELECT ws, d.day, d.metrics, d.breakdowns
    FROM ROWS FROM (pg_catalog.unnest(replace_mart.days), pg_catalog.unnest(replace_mart.metrics),
                    pg_catalog.unnest(replace_mart.breakdowns)) AS d(day, metrics, breakdowns);
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN written;
END $$;

REVOKE EXECUTE ON FUNCTION {REPLACE_MART} FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {REPLACE_MART} TO kpi_tenant;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    from alembic import context

    previous = context.script.get_revision("0004").module.WRITE_FUNCTIONS
    replace_mart = previous[previous.index("-- The workspace's mart rows") :]
    op.execute(f"DROP FUNCTION {REPLACE_MART};")
    op.execute(replace_mart)
    op.execute(
        f"REVOKE EXECUTE ON FUNCTION {PREVIOUS_REPLACE_MART} FROM PUBLIC;"
        f" GRANT EXECUTE ON FUNCTION {PREVIOUS_REPLACE_MART} TO kpi_tenant;"
        " ALTER TABLE kpi.kpi_mart DROP COLUMN breakdowns;"
    )
