"""Raw payloads up to a page stay in the table's own rows, out of line only beyond.

PostgreSQL moves a row's large values to the table's TOAST relation once the row passes
about 2 KB: a Stripe invoice (about 5 KB of JSON), charge (3 KB) or subscription (4 KB) was
stored as chunks in a second table with its own index, written chunk by chunk when landed
and fetched back through that index by every read of a field, and the Stripe metrics read
each payload several times. `toast_tuple_target = 8160` (the most a page holds) keeps a row
up to a page whole; larger ones are still moved out (0010's storage applies to them). The
disk used is about the same: the payloads move from the TOAST relation to the table.
Measured (benchmarks/README.md): the Stripe metrics over 100k freshly landed objects ran in
0.95x the time, and over the same data read again in 0.83x.

The staging table `kpi.open_raw_stage()` makes gets the same target (0010's function with the
target added). Rows written from now on are stored the new way.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import context, op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

WHOLE_ROWS = "toast_tuple_target = 8160"


def _stage_function(whole_rows: bool) -> str:
    """0010's `kpi.open_raw_stage()` for this server's payload storage, with the target."""
    fast_payloads = context.script.get_revision("0010").module
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
    setting = fast_payloads.LZ4 if has_lz4 else fast_payloads.UNCOMPRESSED
    # one ALTER TABLE with both actions: the column's storage, and the table's target
    return fast_payloads._open_raw_stage(
        f"{setting}, SET ({WHOLE_ROWS})" if whole_rows else setting
    )


def upgrade() -> None:
    op.execute(f"ALTER TABLE kpi.raw_records SET ({WHOLE_ROWS})")
    op.execute(_stage_function(whole_rows=True))


def downgrade() -> None:
    op.execute("ALTER TABLE kpi.raw_records RESET (toast_tuple_target)")
    op.execute(_stage_function(whole_rows=False))
