"""Alembic environment: runs on the connection the ``portal db`` command hands over."""

from alembic import context

from portal.models import MODELS

target_metadata = MODELS[0].metadata
connection = context.config.attributes.get("connection")
if connection is None:
    raise SystemExit("Run migrations through `portal db upgrade`, which supplies the database.")

context.configure(
    connection=connection,
    target_metadata=target_metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
