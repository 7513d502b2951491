"""Hot-path reads (the key lookup) on one connection per worker: one round trip, no pool on the way.

Through the pool, a balance request paid for a checkout, a pre-ping (a second
round trip), SQLAlchemy's result machinery and a check-in: more CPU than the
rest of the request together (bench/README.md). Here each worker process (each
thread, under a threaded server) keeps one connection of its own:

- taken from the engine once, on first use, so it has the engine's URL,
  connect arguments and timeouts, and held from then on (it never goes back
  to the pool, so there is no checkout, no reset and no pre-ping per request);
- in autocommit on PostgreSQL and MySQL/MariaDB: no ``BEGIN``/``ROLLBACK``
  around a read, and each read sees the latest committed data;
- a statement is compiled once per dialect to the driver's SQL text; on
  PostgreSQL it is ``PREPARE``d once per connection and each read is one
  ``EXECUTE``, so the server skips parsing and planning the join every time.
  Its name is a hash of its text, so a name means the same statement in every
  worker, host and version: behind a pooler that shares server connections
  between clients (PgBouncer), a statement another worker prepared on the
  server connection we were given is used as ours, and a server connection
  without it makes the reader switch to plain statements (see ``_run``).
  PyMySQL has no server-side statements (a SQL ``PREPARE`` would need a second
  round trip to set the parameter), and Python's sqlite3 caches compiled
  statements per connection by itself, so there the same SQL text is reused;
- rows come back as plain tuples, with the column types' result conversions
  (MySQL's and SQLite's 0/1 booleans) applied when a dialect has any.

Measured (bench/instructions.py, issue 17): a balance request costs 1,048K
instructions on this reader and 1,418K on SQLAlchemy Core with an AUTOCOMMIT
engine, no pre-ping and one retry on a dropped connection (+35 %).

A connection the server dropped (restart, failover, idle timeout) shows up as a
failed read: the read is idempotent, so it is retried once on a new connection,
instead of pinging before every read. A read that ran out of time
(``db_deadline``: the server did not answer) is not retried: its connection is
dropped and the request fails at once, since a new connection to the same
silent server would wait as long again. Any other database error is raised as
SQLAlchemy's ``DBAPIError``, which the app answers with a 503. A forked child
never touches the parent's connection (``forget_connections``, called by ``balance_service.after_fork``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, current_app
from sqlalchemy import Engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Select

from ..extensions import db
from .db_deadline import timed_out

log = logging.getLogger(__name__)

#: PostgreSQL's "prepared statement does not exist": a pooler in transaction mode sits in between.
_NO_SUCH_PREPARED_STATEMENT = "26000"
#: "prepared statement already exists": another client of a pooler prepared it on this server connection.
_DUPLICATE_PREPARED_STATEMENT = "42P05"
#: "cached plan must not change result type": a selected column's type changed since the PREPARE.
_CACHED_PLAN_CHANGED = "0A000"
#: Statements made ready per reader (each a PREPARE per connection on PostgreSQL).
_MAX_PLANS = 32


class _Plan:
    """One statement made ready for one dialect: SQL text, parameter order, type conversions."""

    __slots__ = ("plain", "plain_order", "name", "prepare", "execute", "execute_order", "defaults", "bind", "result")

    def __init__(self, stmt: Select, dialect: Any) -> None:
        compiled = stmt.compile(dialect=dialect)
        self.plain = str(compiled)
        self.plain_order = tuple(compiled.positiontup) if compiled.positional else None
        self.defaults = {name: bind.value for name, bind in compiled.binds.items()}
        self.bind = {
            name: processor
            for name, bind in compiled.binds.items()
            if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        }
        processors = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in stmt.selected_columns]
        self.result = processors if any(processors) else None
        self.name = self.prepare = self.execute = self.execute_order = None
        if dialect.name == "postgresql" and dialect.driver == "psycopg2":
            # The same statement with $1, $2, … placeholders, in the order EXECUTE passes them.
            numbered = stmt.compile(dialect=type(dialect)(paramstyle="numeric_dollar"))
            self.execute_order = tuple(numbered.positiontup)
            # Named after its text: the same name is the same statement in every process
            # that shares a server connection (64 bits, so no two of them ever meet).
            sql = str(numbered)
            self.name = "balance_service_" + hashlib.sha256(sql.encode()).hexdigest()[:16]
            self.prepare = f"PREPARE {self.name} AS {sql}"
            arguments = ", ".join(["%s"] * len(self.execute_order))
            self.execute = f"EXECUTE {self.name} ({arguments})" if arguments else f"EXECUTE {self.name}"

    def parameters(self, values: Mapping[str, Any], order: tuple[str, ...] | None) -> Any:
        """The statement's parameters with ``values`` filled in: a dict, or a list in ``order``."""
        merged = {**self.defaults, **values}
        for name, processor in self.bind.items():
            merged[name] = processor(merged[name])
        return merged if order is None else [merged[name] for name in order]

    def rows(self, cursor: Any) -> list[tuple]:
        """The whole result, read to its end (so SQLite resets the statement and lets go of its read
        lock, which would otherwise hold off the gateway's writes), with the type conversions applied."""
        raw = cursor.fetchall()
        if self.result is None:
            return [tuple(row) for row in raw]
        convert = self.result
        return [tuple(v if c is None else c(v) for c, v in zip(convert, row, strict=True)) for row in raw]


class _Connection:
    """A held pool connection, its cursor and the statements prepared on it."""

    __slots__ = ("fairy", "driver", "cursor", "prepared", "pid")

    def __init__(self, engine: Engine) -> None:
        self.fairy = engine.raw_connection()  # the engine's connect args, events and first-connect setup
        self.driver = self.fairy.driver_connection
        if engine.dialect.name == "postgresql":
            self.driver.autocommit = True
        elif engine.dialect.name in ("mysql", "mariadb"):
            self.driver.autocommit(True)
        # SQLite: Python's sqlite3 opens a transaction only before a write, and
        # the connection may be the one a StaticPool shares with the session.
        self.cursor = self.driver.cursor()
        self.prepared: set[str] = set()
        self.pid = os.getpid()

    def discard(self) -> None:
        """Close it for good (not back to the pool: it may be dead, or its engine disposed)."""
        try:
            self.fairy.invalidate()
        except Exception:  # noqa: BLE001 - closing a broken connection may fail again; it is gone either way
            log.debug("closing a discarded connection failed", exc_info=True)


#: Connections inherited through fork: never used and never closed in the child (closing
#: would end the parent's session), kept referenced so garbage collection cannot close them.
_inherited: list[_Connection] = []
_readers: weakref.WeakSet[DirectReader] = weakref.WeakSet()


class DirectReader:
    """Reads on this thread's own connection of ``engine`` (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self.error = engine.dialect.loaded_dbapi.Error
        self.use_prepared = True
        self._plans: dict[int, tuple[Select, _Plan]] = {}
        self._local = threading.local()
        self._all: set[_Connection] = set()
        self._lock = threading.Lock()
        #: Called with the SQL text and parameters of every statement sent (tracing, tests that count them).
        self.listeners: list[Callable[[str, Any], None]] = []
        _readers.add(self)
        event.listen(engine, "engine_disposed", self._close_all)

    def first_row(self, stmt: Select, params: Mapping[str, Any]) -> tuple | None:
        """The first row of ``stmt`` (a SELECT, so safe to run twice) as a tuple, or None."""
        rows = self.rows(stmt, params)
        return rows[0] if rows else None

    def rows(self, stmt: Select, params: Mapping[str, Any]) -> list[tuple]:
        """Every row of ``stmt`` (a SELECT, so safe to run twice), as tuples."""
        plan = self._plan(stmt)
        try:
            return self._run(plan, params)
        except self.error as e:
            if not self._drop_if_disconnected(e) or timed_out(e):
                raise self._wrap(e, plan) from e
        try:  # once more, on a new connection: the old one was dead
            return self._run(plan, params)
        except self.error as e:
            self._drop_if_disconnected(e)
            raise self._wrap(e, plan) from e

    def _plan(self, stmt: Select) -> _Plan:
        found = self._plans.get(id(stmt))
        if found is None or found[0] is not stmt:
            # Callers pass the same statement object each time (built once, e.g. lru_cache); a
            # caller building new ones would make this grow, hence the bound. Nothing is
            # DEALLOCATEd: a statement made ready again has the same name, so it finds its
            # PREPARE still on the connection, and the server holds one per distinct statement
            # the code can build (a handful). A DEALLOCATE could also take a statement away from
            # another worker that shares the server connection through a pooler.
            if len(self._plans) >= _MAX_PLANS:
                self._plans.clear()
            found = (stmt, _Plan(stmt, self.dialect))  # the statement is kept, so its id stays its own
            self._plans[id(stmt)] = found
        return found[1]

    def _connection(self) -> _Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = _Connection(self.engine)
            self._local.connection = connection
            with self._lock:
                self._all.add(connection)
        return connection

    def _run(self, plan: _Plan, params: Mapping[str, Any]) -> list[tuple]:
        connection = self._connection()
        cursor = connection.cursor
        if plan.name is None or not self.use_prepared:
            self._send(cursor, plan.plain, plan.parameters(params, plan.plain_order))
            return plan.rows(cursor)
        try:
            if plan.name not in connection.prepared:
                self._prepare(connection, plan)
            arguments = plan.parameters(params, plan.execute_order)
            try:
                self._send(cursor, plan.execute, arguments)
            except self.error as e:
                if getattr(e, "pgcode", None) != _CACHED_PLAN_CHANGED:
                    raise
                # A column's type changed under the prepared statement (a gateway
                # migration): PostgreSQL refuses it until it is prepared again.
                self._send(cursor, f"DEALLOCATE {plan.name}", None)
                self._prepare(connection, plan)
                self._send(cursor, plan.execute, arguments)
        except self.error as e:
            if getattr(e, "pgcode", None) != _NO_SUCH_PREPARED_STATEMENT:
                raise
            # Only a pooler that hands each statement to another server connection
            # (PgBouncer in transaction mode) loses a statement we prepared. Preparing
            # again would not help: the EXECUTE may land on yet another one. So this
            # reader sends plain statements from now on, this request's included.
            if self.use_prepared:
                self.use_prepared = False
                log.warning(
                    "prepared statements do not survive between statements here (a pooler in transaction mode, "
                    "such as PgBouncer?); using plain statements from now on"
                )
            self._send(cursor, plan.plain, plan.parameters(params, plan.plain_order))
        return plan.rows(cursor)

    def _prepare(self, connection: _Connection, plan: _Plan) -> None:
        """PREPARE ``plan`` on ``connection``; finding it there already counts as done.

        Only a pooler that shares server connections between clients (PgBouncer in
        transaction mode, or in session mode without a reset query) gives us one on
        which another worker prepared it: the name is the hash of the text, so it is
        this very statement. The connection is in autocommit, so the failed PREPARE
        was a transaction of its own: nothing is left aborted, and a pooler has let
        go of the server connection (the EXECUTE may get another one: then 26000).
        """
        try:
            self._send(connection.cursor, plan.prepare, None)
        except self.error as e:
            if getattr(e, "pgcode", None) != _DUPLICATE_PREPARED_STATEMENT:
                raise
        connection.prepared.add(plan.name)

    def _send(self, cursor: Any, sql: str, parameters: Any) -> None:
        for listener in self.listeners:
            listener(sql, parameters)
        cursor.execute(sql, parameters)

    def _drop_if_disconnected(self, error: Exception) -> bool:
        """Forget this thread's connection if ``error`` means it is dead (or did not answer); say whether it was."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            return False
        if not (self.dialect.is_disconnect(error, connection.driver, connection.cursor) or timed_out(error)):
            return False
        self._local.connection = None
        with self._lock:
            self._all.discard(connection)
        connection.discard()
        return True

    def _wrap(self, error: Exception, plan: _Plan) -> DBAPIError:
        # Parameters hidden: they hold the API key.
        return DBAPIError.instance(plan.plain, None, error, self.error, hide_parameters=True, dialect=self.dialect)

    def _close_all(self, *_: Any) -> None:
        """The engine was disposed (app shutdown, tests): close every connection this reader opened here."""
        with self._lock:
            connections, self._all = self._all, set()
        self._local = threading.local()
        for connection in connections:
            if connection.pid == os.getpid():
                connection.discard()

    def _forget_after_fork(self) -> None:
        with self._lock:
            _inherited.extend(self._all)
            self._all = set()
        self._local = threading.local()


_EXTENSION = "balance_direct_reads"


def init_app(app: Flask) -> None:
    """Give the app its reader, on the engine Flask-SQLAlchemy made for it; connections open on first use."""
    with app.app_context():
        app.extensions[_EXTENSION] = DirectReader(db.engine)


def reader(app: Flask | None = None) -> DirectReader:
    """The reader of ``app`` (default: the current app)."""
    return (app or current_app).extensions[_EXTENSION]


def forget_connections() -> None:
    """In a forked child: leave every reader's inherited connections alone for good (``after_fork``)."""
    for reader in list(_readers):
        reader._forget_after_fork()
