"""The service's own tables (``balance_alerts``, the usage roll-up), migrated with Alembic; never the gateway's.

``init-db`` runs ``init_database`` (a gateway's database has ``users`` and
``tokens`` already; a standalone or demo install gets them). Revisions live in ``versions/``.

No request and no ``check-alerts`` pass runs DDL: they call ``require_current``,
which only reads the version table and raises ``NotMigrated`` (the API answers
503, the command exits 1) until an operator runs ``init-db``.

Alembic itself is imported by ``init_database`` only, never by a serving
worker: importing it (with Mako) costs a worker ~11 MB of memory and ~150
modules (measured with ``ru_maxrss`` around the import), and the workers have a
60 MB budget (issue 11). So the version check here is two plain SQLAlchemy
reads, and ``HEAD`` names the newest revision (tests/test_migrations.py checks
it against Alembic's own answer).
"""

from __future__ import annotations

import hashlib
import logging
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sqlalchemy import Column, Connection, Engine, MetaData, String, Table, func, inspect, select

from ..extensions import db

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

#: Alembic's version table, named for the service (a gateway or another tool may have an ``alembic_version``).
VERSION_TABLE = "balance_service_alembic_version"
#: The newest revision in ``versions/``: the one this code reads and writes. A new revision moves it.
HEAD = "0003"
#: The only tables the revisions create or change; everything else in the database belongs to the gateway.
SERVICE_TABLES = frozenset({"balance_alerts", "usage_rollup", "usage_rollup_state"})
#: The operator's command that brings the table to the current revision, for error messages.
INIT_DB = "flask --app wsgi init-db"

#: PostgreSQL advisory lock key that serializes two ``init-db`` runs on one database ("bal\x02").
_PG_LOCK = 0x62616C02
#: Seconds an ``init-db`` waits for another one to finish.
_LOCK_WAIT = 120


class NotMigrated(Exception):
    """``balance_alerts`` is missing or not at the revision this code expects: an operator has to run ``init-db``."""


class MigrationBusy(Exception):
    """Another ``init-db`` held the migration lock for longer than this one waits."""


def include_name(name: str | None, type_: str, parent_names: dict) -> bool:
    """Autogenerate reflects only the service's tables from the database (a gateway's database has many)."""
    return type_ != "table" or name in SERVICE_TABLES


def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Autogenerate compares only the service's tables and their indexes (``db.metadata`` maps the gateway's too)."""
    table = obj if type_ == "table" else getattr(obj, "table", None)
    return table is None or table.name in SERVICE_TABLES


def alembic_config() -> Config:
    """Alembic's configuration, built here rather than read from a file, so the installed package needs none."""
    from alembic.config import Config  # see the module's docstring: not in serving workers

    config = Config()
    config.set_main_option("script_location", "balance_service:migrations")
    return config


#: Alembic's version table as Alembic lays it out, for reading it without Alembic.
_versions = Table(VERSION_TABLE, MetaData(), Column("version_num", String(32), primary_key=True))


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at, or None when none has been applied (reads only, never DDL)."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    found = connection.execute(select(_versions.c.version_num)).scalars().all()
    return found[0] if len(found) == 1 else ",".join(sorted(found)) or None


def mysql_lock_name(database: str) -> str:
    """The MySQL/MariaDB named lock of ``init-db`` on ``database`` (names are global to the server)."""
    return "balance_service.migrate." + hashlib.sha256(database.encode()).hexdigest()[:24]


def _waited_for(take: Callable[[], bool]) -> bool:
    """Ask ``take()`` (a lock that waits a second at most) until it says yes, for ``_LOCK_WAIT`` seconds at most."""
    ends = time.monotonic() + _LOCK_WAIT
    while not take():
        if time.monotonic() >= ends:
            return False
        time.sleep(0.5)  # PostgreSQL's try-lock answers at once; MySQL's GET_LOCK waited a second already
    return True


@contextmanager
def _one_at_a_time(connection: Connection) -> Iterator[None]:
    """Hold the database's migration lock and an open transaction: a second ``init-db`` waits, then finds head.

    PostgreSQL: a transaction-scoped advisory lock (its DDL is transactional
    too). SQLite: ``BEGIN IMMEDIATE`` takes the one write lock up front.
    MySQL/MariaDB: a named lock of the connection (DDL commits there by itself),
    named after the database, since the names are global to the server. The
    locks are asked for a second at a time (``_waited_for``): one long wait would
    be cut off by the statement timeout (5 s by default) long before ``_LOCK_WAIT``.
    """
    dialect = connection.dialect.name
    if dialect in ("mysql", "mariadb"):
        name = mysql_lock_name(connection.engine.url.database or "")
        got = _waited_for(lambda: connection.execute(select(func.get_lock(name, 1))).scalar() == 1)
        connection.commit()
        if not got:
            raise MigrationBusy(f"another init-db has held the migration lock for {_LOCK_WAIT} s")
        try:
            with connection.begin():
                yield
        finally:
            connection.execute(select(func.release_lock(name)))
            connection.commit()
        return
    with connection.begin():
        if dialect == "postgresql":
            if not _waited_for(lambda: connection.execute(select(func.pg_try_advisory_xact_lock(_PG_LOCK))).scalar()):
                raise MigrationBusy(f"another init-db has held the migration lock for {_LOCK_WAIT} s")
        elif dialect == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield


def init_database(engine: Engine) -> tuple[str | None, str]:
    """What ``init-db`` does: the gateway's tables when absent (standalone installs), then Alembic's ``upgrade head``.

    Both under the migration lock, so a second run at the same time waits and
    then finds everything there. Returns the revisions before and after.
    """
    from alembic import command  # see the module's docstring: not in serving workers

    gateway_tables = [table for name, table in db.metadata.tables.items() if name not in SERVICE_TABLES]
    config = alembic_config()
    with engine.connect() as connection, _one_at_a_time(connection):
        db.metadata.create_all(connection, tables=gateway_tables)
        before = current_revision(connection)
        if before == HEAD:
            return before, before
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        after = current_revision(connection)
    log.warning("balance_alerts: migrated from revision %s to %s", before or "(none)", after)
    return before, after


#: Engines whose database was found at head: checked once per process (engine), never again.
_current: weakref.WeakSet[Engine] = weakref.WeakSet()
#: Engines whose missing migration was logged already, so a busy API logs it once.
_reported: weakref.WeakSet[Engine] = weakref.WeakSet()


def require_current(engine: Engine) -> None:
    """Raise ``NotMigrated`` unless the database is at ``head``; a database found there is not asked again."""
    if engine in _current:
        return
    with engine.connect() as connection:
        found = current_revision(connection)
    if found == HEAD:
        _current.add(engine)
        return
    if engine not in _reported:
        _reported.add(engine)
        log.error(
            "balance_alerts is at revision %s, this version needs %s: run `%s`",
            found or "(none)",
            HEAD,
            INIT_DB,
        )
    raise NotMigrated(f"balance_alerts is not set up for this version; run `{INIT_DB}`")
