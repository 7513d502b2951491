"""The gateway's request logs in ClickHouse: new-api's ``LOG_SQL_DSN=clickhouse://…``, read over the native protocol.

``LOG_DATABASE_URL=clickhouse://user:password@host:9000/database`` (or
``clickhouses://`` for TLS) selects ``ClickHouseLogSource``. Each figure is
one aggregate query computed in ClickHouse (``sumIf``/``countIf`` grouped by
UTC day and model), never rows fetched into Python, so a month of a busy
account costs one scan of that month's partition, not a transfer.

new-api makes the table with ``ENGINE = MergeTree() PARTITION BY
toYYYYMM(toDateTime(created_at)) ORDER BY (created_at, request_id)``; the
sort key makes the ``created_at`` range the part of the filter that skips
data, the rest is a scan of the range, which ClickHouse does fast. Ids are
not unique there and are never read.

Values reach the server only as parameters: clickhouse-driver substitutes
``%(name)s`` on the client side with quoted, escaped literals. Any driver or
network error becomes ``LogStoreError``, a ``SQLAlchemyError``, so it takes
the same path as a failing SQL database (a 503 JSON answer, counted, logged
without the key).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date
from typing import Any

from clickhouse_driver import Client
from clickhouse_driver.errors import Error as DriverError
from clickhouse_driver.util.helpers import parse_url
from sqlalchemy.exc import SQLAlchemyError

from .._internal.db_deadline import MARGIN
from ..gateway.logs import CLICKHOUSE_COLUMNS, Scope, UsageRow, clickhouse_daily, clickhouse_net, usage_rows
from ..gateway.tables import cache

#: Idle connections kept per process; a sync gunicorn worker needs one, a threaded one a few more.
MAX_IDLE = 4

#: Socket timeout when ``DB_STATEMENT_TIMEOUT_MS`` is 0 ("no limit"): a dead server still frees the worker.
NO_LIMIT_RECEIVE_TIMEOUT = 300.0


class LogStoreError(SQLAlchemyError):
    """ClickHouse could not answer; handled like any database error. ``orig`` is the driver's exception."""

    def __init__(self, orig: BaseException) -> None:
        super().__init__(f"{type(orig).__name__}: {orig}")
        self.orig = orig


def client_options(url: str, connect_timeout: int, statement_timeout_ms: int) -> tuple[str, dict[str, Any]]:
    """Host and ``Client`` keyword arguments for ``url`` with the service's timeouts.

    Timeouts given in the URL's query string win. ``max_execution_time`` makes
    the server itself give up on a query that takes longer than the statement
    timeout; the socket timeout is ``db_deadline.MARGIN`` longer, so that the
    server's own error arrives first, and bounds a server that does not answer
    at all (frozen, partitioned). The driver pings a pooled connection before
    each query and connects again when the ping goes unanswered, waiting for the
    new connection's hello as long again: so the ping waits only half the
    margin, and a silent server costs a query at most the statement timeout
    and ``1.5 * MARGIN``, under the second the issue allows.
    """
    host, options = parse_url(url)
    options.setdefault("connect_timeout", connect_timeout)
    if statement_timeout_ms:
        seconds = statement_timeout_ms / 1000
        options.setdefault("send_receive_timeout", seconds + MARGIN)
        options.setdefault("sync_request_timeout", MARGIN / 2)
        settings = dict(options.get("settings") or {})
        settings.setdefault("max_execution_time", max(1, math.ceil(seconds)))
        options["settings"] = settings
    else:
        options.setdefault("send_receive_timeout", NO_LIMIT_RECEIVE_TIMEOUT)
    options.setdefault("client_name", "balance-service")
    return host, options


def given_in_url(url: str) -> frozenset[str]:
    """The driver options and server settings ``url``'s query string sets itself (they win, log queries too)."""
    _, options = parse_url(url)
    return frozenset(options) | frozenset(options.get("settings") or ())


class ClickHousePool:
    """A few reusable native connections per process (a ``Client`` is not thread-safe: one per caller at a time).

    After ``fork`` the parent's connections are dropped without closing them,
    so a gunicorn worker never talks on its parent's socket.
    """

    def __init__(self, host: str, options: Mapping[str, Any], given: frozenset[str] = frozenset()) -> None:
        self.host = host
        self.options = dict(options)
        #: What the URL set itself (``given_in_url``): a log query's own timeout does not replace it.
        self.given = given
        self._idle: list[Client] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    @property
    def database(self) -> str:
        return self.options.get("database") or "default"

    def _take(self) -> Client:
        with self._lock:
            if self._pid != os.getpid():
                self._idle, self._pid = [], os.getpid()
            if self._idle:
                return self._idle.pop()
        return Client(self.host, **self.options)

    def _give_back(self, client: Client) -> None:
        with self._lock:
            if self._pid == os.getpid() and len(self._idle) < MAX_IDLE:
                self._idle.append(client)
                return
        client.disconnect()

    @contextmanager
    def client(self) -> Iterator[Client]:
        client = self._take()
        try:
            yield client
        except BaseException:
            client.disconnect()  # its connection may be mid-answer: never reuse it
            raise
        self._give_back(client)

    def query(self, statement: str, params: Mapping[str, Any], timeout_ms: int | None = None) -> list[tuple]:
        """Rows of ``statement`` with ``params`` bound by the driver; any failure is a ``LogStoreError``.

        ``timeout_ms``: how long this query may take (0: no limit) instead of
        the pool's statement timeout, on the server (``max_execution_time``)
        and on the socket (``MARGIN`` later), unless the URL set those itself.
        The ping ``execute`` sends first keeps its own short timeout and puts
        this one back; when it goes unanswered, the new connection's hello and
        the query get the pool's times, so a server that is already silent
        fails the query as fast.
        """
        try:
            with self.client() as client:
                if timeout_ms is None:
                    return client.execute(statement, params)
                # The connection execute takes next: with round_robin the client rotates through one per host.
                connection = client.connections[0] if client.connections else client.connection
                if not connection.connected:
                    connection.connect()  # a new connection: the pool's times for its hello
                seconds = timeout_ms / 1000
                settings = {}
                if "max_execution_time" not in self.given:
                    settings["max_execution_time"] = math.ceil(seconds)
                if "send_receive_timeout" not in self.given:
                    connection.socket.settimeout(seconds + MARGIN if timeout_ms else NO_LIMIT_RECEIVE_TIMEOUT)
                try:
                    return client.execute(statement, params, settings=settings)
                finally:
                    if connection.socket is not None:
                        connection.socket.settimeout(connection.send_receive_timeout)
        except (DriverError, OSError, EOFError) as e:
            raise LogStoreError(e) from e

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for client in idle:
            client.disconnect()


class ClickHouseLogSource:
    """The ``LogSource`` on new-api's ClickHouse ``logs`` table (``usage.source``); queries from ``gateway.logs``."""

    def __init__(self, pool: ClickHousePool, query_timeout_ms: int) -> None:
        self.pool = pool
        #: How long each sum may take (``config.Settings.log_statement_timeout_ms``).
        self.query_timeout_ms = query_timeout_ms

    def columns(self) -> frozenset[str] | None:
        """Column names of ``logs`` in the URL's database, or None when there is no such table (cached)."""

        def load() -> frozenset[str] | None:
            return frozenset(name for (name,) in self.pool.query(*CLICKHOUSE_COLUMNS)) or None

        return cache.get(self.pool, "logs columns", load)

    def has_logs(self) -> bool:
        return self.columns() is not None

    def daily_statement(self, scope: Scope, start: date, end: date) -> tuple[str, dict[str, Any]]:
        """The one query behind ``daily_usage``: net quota and requests per UTC day and model."""
        return clickhouse_daily(scope, start, end, self.columns() or frozenset())

    def daily_usage(self, scope: Scope, start: date, end: date) -> list[UsageRow]:
        return usage_rows(self.pool.query(*self.daily_statement(scope, start, end), self.query_timeout_ms))

    def net_spend(self, scope: Scope, start: date, end: date) -> int:
        statement = clickhouse_net(scope, start, end, self.columns() or frozenset())
        rows = self.pool.query(*statement, self.query_timeout_ms)
        return int(rows[0][0]) if rows else 0
