"""Raw payloads are stored without pglz: lz4 where the server has it, else uncompressed.

A landed provider object (a Stripe invoice, 2-5 KB of JSON) was compressed with pglz, the
server's default, once in the write path's staging table and carried compressed into
`kpi.raw_records`; pglz took about 30% of the server's time of a landing (57,000 Stripe
objects: 5.5 s with it, 3.9 s without), and every read of a payload's fields (the Stripe
metrics read each several times) paid its decompression. On a server built with lz4
(Debian's and the managed services' PostgreSQL) the payloads are compressed with lz4, which
costs a fraction of pglz both ways for about the same size; on one without it (the embedded
server's build) they are stored uncompressed, out of line when large: about 1.8x the disk
of pglz for the raw layer (the KPI tables do not change).

The staging table `kpi.open_raw_stage()` makes gets the same setting (a value compressed
there would stay compressed in `raw_records`). Only rows written from now on are stored the
new way. The function keeps 0004's owner, grants, guards and search_path.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

DEFINER = "SECURITY DEFINER SET search_path = pg_catalog, pg_temp"
RAW_STAGE = (
    "workspace_id text, source text, stream text, record_id text, payload jsonb,"
    " source_updated_at timestamptz"
)
LZ4 = "SET COMPRESSION lz4"
UNCOMPRESSED = "SET STORAGE EXTERNAL"


def _open_raw_stage(payload_setting: str | None) -> str:
    """0004's `kpi.open_raw_stage()`, with `payload_setting` applied to a new table."""
    setting = (
        f"ALTER TABLE pg_temp.raw_stage ALTER COLUMN payload {payload_setting};"
        if payload_setting
        else ""
    )
    return f"""
CREATE OR REPLACE FUNCTION kpi.open_raw_stage() RETURNS void
LANGUAGE plpgsql {DEFINER} AS $$
BEGIN
    PERFORM kpi.transaction_actor();
    IF pg_catalog.to_regclass('pg_temp.raw_stage') IS NULL THEN
        CREATE TEMP TABLE raw_stage ({RAW_STAGE}) ON COMMIT DROP;
        {setting}
        GRANT INSERT ON TABLE pg_temp.raw_stage TO kpi_tenant;
    ELSE
        PERFORM kpi.raw_stage_is_ours();
        TRUNCATE pg_temp.raw_stage;
    END IF;
END $$;
"""


def upgrade() -> None:
    has_lz4 = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT 'lz4' = ANY(enumvals) FROM pg_catalog.pg_settings"
                " WHERE name = 'default_toast_compression'"
            )
        )
        .scalar()
    )
    setting = LZ4 if has_lz4 else UNCOMPRESSED
    op.execute(f"ALTER TABLE kpi.raw_records ALTER COLUMN payload {setting}")
    op.execute(_open_raw_stage(setting))


def downgrade() -> None:
    op.execute(
        "ALTER TABLE kpi.raw_records ALTER COLUMN payload SET STORAGE EXTENDED,"
        " ALTER COLUMN payload SET COMPRESSION DEFAULT"
    )
    op.execute(_open_raw_stage(None))
