"""Alembic environment for the broker's tables (run through einmal.migrate)."""

from alembic import context
from sqlmodel import SQLModel

import broker.tables  # noqa: F401 - registers the tables on SQLModel.metadata

config = context.config
connection = config.attributes["connection"]
prefix = f"{config.attributes['component']}_"


def include_object(obj, name, type_, reflected, compare_to):
    """Only this component's tables (both components may share one database)."""
    table = obj if type_ == "table" else getattr(obj, "table", None)
    table_name = name if type_ == "table" else getattr(table, "name", "")
    return str(table_name).startswith(prefix)


context.configure(connection=connection, target_metadata=SQLModel.metadata,
                  version_table=config.attributes["version_table"],
                  include_object=include_object,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
