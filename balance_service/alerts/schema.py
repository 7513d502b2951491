"""Bring an existing ``balance_alerts`` table up to date: add the columns later versions introduced.

``init-db`` creates missing tables but never changes an existing one, and
deployments made before these columns existed have the table already. The
columns are added with ``ALTER TABLE … ADD COLUMN`` (our own table only, never
a gateway table), once per process, before the alerts API or ``check-alerts``
first touches the table; ``init-db`` does it too.
"""

from __future__ import annotations

import logging
from functools import lru_cache

from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import SQLAlchemyError

from .models import BalanceAlert

log = logging.getLogger(__name__)

#: Columns added after the table's first release, in the order they were added.
ADDED_COLUMNS = ("created_by_token_id", "failures", "next_attempt_at", "days_left_tenths")


def _column_ddl(engine: Engine, name: str) -> str:
    column = BalanceAlert.__table__.c[name]
    ddl = f"{engine.dialect.identifier_preparer.quote(name)} {column.type.compile(dialect=engine.dialect)}"
    if column.server_default is not None:
        ddl += f" NOT NULL DEFAULT {column.server_default.arg}"
    return ddl


def _present_columns(engine: Engine) -> set[str] | None:
    inspector = inspect(engine)
    if not inspector.has_table(BalanceAlert.__tablename__):
        return None
    return {column["name"] for column in inspector.get_columns(BalanceAlert.__tablename__)}


def upgrade(engine: Engine) -> list[str]:
    """Add the missing columns to an existing table; returns their names (none if there is no table yet).

    Two processes may start at once: a column the other one added in the
    meantime is not an error.
    """
    present = _present_columns(engine)
    if present is None:
        return []
    table = engine.dialect.identifier_preparer.quote(BalanceAlert.__tablename__)
    added = []
    for name in ADDED_COLUMNS:
        if name in present:
            continue
        try:
            with engine.begin() as connection:
                connection.execute(text(f"ALTER TABLE {table} ADD COLUMN {_column_ddl(engine, name)}"))
        except SQLAlchemyError:
            if name not in (_present_columns(engine) or set()):
                raise
            continue
        added.append(name)
        log.warning("balance_alerts: added column %s", name)
    if "created_by_token_id" in added:
        # A token-scoped alert was created by the key it watches; account-scoped ones keep no creator.
        with engine.begin() as connection:
            connection.execute(
                text(
                    f"UPDATE {table} SET created_by_token_id = token_id "
                    "WHERE created_by_token_id IS NULL AND token_id IS NOT NULL"
                )
            )
    return added


@lru_cache(maxsize=32)
def ensure_upgraded(engine: Engine) -> None:
    """``upgrade`` once per engine (process); a failure is not cached, so the next use tries again."""
    upgrade(engine)
