"""Alembic environment: uses the connection handed over by ``dockyard.meta.db.migrate``."""

from alembic import context

from dockyard.meta.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
