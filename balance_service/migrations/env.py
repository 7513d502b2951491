"""Alembic's environment: the service's own tables only, versions in ``balance_service_alembic_version``.

``init-db`` (``migrations.upgrade``) hands over its connection, already in a
transaction and holding the migration lock. Run from the ``alembic`` command
line (``alembic revision --autogenerate``, ``alembic check``; configured in
pyproject.toml) it connects to the app's ``DATABASE_URL``. Autogenerate
compares ``SERVICE_TABLES`` alone: the gateway's tables in the same metadata
and database are none of Alembic's business. There is no offline (``--sql``)
mode: the first revision looks at the table it finds.
"""

from __future__ import annotations

from alembic import context

from balance_service.extensions import db
from balance_service.migrations import VERSION_TABLE, include_name, include_object


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=db.metadata,
        version_table=VERSION_TABLE,
        include_name=include_name,
        include_object=include_object,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("balance_service migrations need a database connection; --sql is not supported")

given = context.config.attributes.get("connection")
if given is not None:
    _run(given)
else:
    from balance_service import create_app

    with create_app().app_context(), db.engine.connect() as connection:
        _run(connection)
