"""Alembic environment: the caller hands over a connection already acting as kpi_owner."""

from alembic import context

from kpi_pipelines.warehouse.migrate import SCHEMA, VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    version_table_schema=SCHEMA,
    version_table=VERSION_TABLE,
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
