"""A sync that landed many raw records refreshes `raw_records`' statistics before its metrics.

A provider's metrics are SQL over the records its sync just landed. Right after a large
landing (a first read, a reconcile that healed much) the table's statistics describe what it
held before (autovacuum analyzes it within a minute or so, after the metrics ran): the
planner then reads a stream of a million objects as a few dozen rows, by index in id order,
where their pages lie in the order they were written. `kpi.analyze_raw_records()` lets a
proved tenant transaction ask for an ANALYZE of the table (the owner's right): the Stripe
metrics over 1M freshly landed objects took 30.9 s after it against 34.7 s without
(benchmarks/README.md). ANALYZE takes a lock only other ANALYZEs and VACUUMs wait for, reads
a bounded sample, and the object engine asks only after landing 10,000 records or more.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

DEFINER = "SECURITY DEFINER SET search_path = pg_catalog, pg_temp"
FUNCTION = "kpi.analyze_raw_records()"

UPGRADE = f"""
CREATE FUNCTION {FUNCTION} RETURNS void
LANGUAGE plpgsql {DEFINER} AS $$
BEGIN
    PERFORM kpi.transaction_actor();  -- a proved tenant transaction, or nobody
    ANALYZE kpi.raw_records;
END $$;

REVOKE EXECUTE ON FUNCTION {FUNCTION} FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {FUNCTION} TO kpi_tenant;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(f"DROP FUNCTION {FUNCTION}")
