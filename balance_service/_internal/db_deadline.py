"""A deadline on every database call that does not rely on the server: a frozen server fails a request, not a worker.

Internal to the engine set-up (``config.engine_options``), ``direct_reads`` and
the app's engines (``watch``). A PostgreSQL server that is stopped (SIGSTOP),
swapped out or cut off behind a partition still has its kernel accept and
acknowledge TCP, so TCP keepalives and ``tcp_user_timeout`` never fire, and
``statement_timeout`` is enforced by the very server that does not run. libpq
in blocking mode then waits in ``poll()`` with no limit, and psycopg2 has no
timeout of its own: every request hung until gunicorn killed the worker
(issue 21). What psycopg2 does offer is a hook: a process-wide wait callback
(``psycopg2.extensions.set_wait_callback``, its "green" mode), with which libpq
runs non-blocking and psycopg2 calls back whenever it has to wait for the
socket. ``_wait`` waits there with ``poll()`` for the time left, and past the
deadline raises :class:`DeadlineExceeded` (an ``OperationalError``); psycopg2
then closes the connection, which SQLAlchemy and ``direct_reads`` count as a
dead one and replace. No cancel request is sent: it would go to the frozen
postmaster and wait as well.

- The deadline is ``DB_STATEMENT_TIMEOUT_MS`` + ``MARGIN`` per call (so the
  server's own ``statement_timeout`` fires first whenever the server runs),
  and the connect timeout for a new connection (libpq leaves its
  ``connect_timeout`` to the application in non-blocking mode). Only
  connections made with :func:`connection_class` carry one; any other psycopg2
  connection in the process (tests, scripts) waits without limit, as in
  blocking mode. The callback is installed by the first of ours to connect.
- Green mode has no COPY and no large objects; the service uses neither.
- MySQL/MariaDB (PyMySQL) already bounds each socket read and write
  (``read_timeout``/``write_timeout``, the statement timeout); nothing is
  wrapped there, only recognised by :func:`timed_out`.
- :func:`connect` gives the statements of one connection a longer limit of
  their own, on both sides (the log queries: ``config.LOG_STATEMENT_FACTOR``);
  the pool's pre-ping at checkout keeps the short one, so a server that is
  already silent still fails the request within the statement timeout.
- A call that ran out of time is not tried again in the same request:
  ``direct_reads`` does not retry it, and :func:`watch` keeps a pool's pre-ping
  that ran out of time from opening a new connection to the same silent server
  (each would wait as long again: twice the bound, as MariaDB's 10 s showed).

Measured (bench/instructions.py, PostgreSQL, default settings, issue 21): a
balance request costs 1,021K instructions with the callback (one ``poll()``
wait per statement) and 1,011K without it: +1 %, the price of a worker that
survives a silent database.
"""

from __future__ import annotations

import functools
import select
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import psycopg2
import psycopg2.extensions
from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import ExceptionContext

#: Added to the statement timeout: the server's own cancellation, when it runs, comes first.
MARGIN = 0.5

_POLL_OK = psycopg2.extensions.POLL_OK
_POLL_READ = psycopg2.extensions.POLL_READ
_POLL_WRITE = psycopg2.extensions.POLL_WRITE
_STATUS_SETUP = psycopg2.extensions.STATUS_SETUP


class DeadlineExceeded(psycopg2.OperationalError):
    """The database server did not answer within the client's deadline; the connection is closed."""


def _wait(conn: Any) -> None:
    """psycopg2's wait callback: drive ``conn`` until its operation is done, or raise past its deadline."""
    # A connection of ours has both limits; any other one, neither (no deadline). The status
    # is read first: polling a connection that is being set up moves it on to "connecting".
    connecting = conn.status == _STATUS_SETUP
    state = conn.poll()
    if state == _POLL_OK:
        return
    seconds = getattr(conn, "connect_seconds" if connecting else "call_seconds", None)
    end = None if seconds is None else time.monotonic() + seconds
    while state != _POLL_OK:
        if state == _POLL_READ:
            events = select.POLLIN
        elif state == _POLL_WRITE:
            events = select.POLLOUT
        else:
            raise psycopg2.OperationalError(f"unexpected poll state {state}")
        if end is None:
            timeout = None
        else:
            left = end - time.monotonic()
            if left <= 0:
                raise DeadlineExceeded(f"no answer from the database server within {seconds:g} s (client deadline)")
            timeout = left * 1000
        poller = select.poll()
        poller.register(conn.fileno(), events)  # during connect libpq may move to another address (another fd)
        poller.poll(timeout)
        state = conn.poll()


class _DeadlineConnection(psycopg2.extensions.connection):
    """A psycopg2 connection whose waits end at its deadline (the subclasses made by :func:`connection_class`)."""

    connect_seconds: float | None = None
    call_seconds: float | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if psycopg2.extensions.get_wait_callback() is not _wait:
            psycopg2.extensions.set_wait_callback(_wait)
        super().__init__(*args, **kwargs)


@functools.cache
def connection_class(connect_seconds: float, statement_timeout_ms: int) -> type:
    """psycopg2's ``connection_factory`` for connections that wait ``connect_seconds`` to connect and
    ``statement_timeout_ms`` + ``MARGIN`` for each call (0: no limit on calls)."""
    call = statement_timeout_ms / 1000 + MARGIN if statement_timeout_ms else None
    return type(
        "DeadlineConnection",
        (_DeadlineConnection,),
        {"connect_seconds": connect_seconds if call is None else min(connect_seconds, call), "call_seconds": call},
    )


def timed_out(error: BaseException) -> bool:
    """Whether a driver's ``error`` means the server did not answer in time (so asking again would wait again)."""
    if isinstance(error, DeadlineExceeded):
        return True
    # PyMySQL raises its OperationalError while handling the socket's timeout (read, write or connect).
    return isinstance(error.__context__, TimeoutError)


def _no_new_connection_after_a_silent_ping(context: ExceptionContext) -> None:
    if context.is_pre_ping and context.original_exception is not None and timed_out(context.original_exception):
        # Not a "disconnect": the checkout fails (and the connection is invalidated) instead
        # of connecting again to a server that has just not answered for the whole deadline.
        context.is_disconnect = False


def watch(engine: Engine) -> None:
    """Make ``engine``'s pool give up, not reconnect, when its pre-ping ran out of time."""
    if not event.contains(engine, "handle_error", _no_new_connection_after_a_silent_ping):
        event.listen(engine, "handle_error", _no_new_connection_after_a_silent_ping)


#: SQLite calls the progress handler every this many virtual-machine instructions (~0.1 ms of a scan).
_SQLITE_CHECK_EVERY = 10_000


def _sqlite_deadline(seconds: float) -> Callable[[], int]:
    """A progress handler that interrupts the running statement (``sqlite3.OperationalError``) after ``seconds``."""
    end = time.monotonic() + seconds
    return lambda: int(time.monotonic() > end)


@contextmanager
def connect(engine: Engine, statement_timeout_ms: int) -> Iterator[Connection]:
    """A connection of ``engine`` whose statements may each take ``statement_timeout_ms`` (0: no limit) instead of
    the engine's own, on the server where it has such a limit and on the client in any case.

    For one use, not to keep: the connection goes back to the pool at the end
    of the block, which ends its transaction. PostgreSQL: ``statement_timeout``
    for this transaction only (``SET LOCAL``, which PgBouncer's transaction mode
    keeps) and the wait callback's deadline; MySQL/MariaDB: PyMySQL's
    read timeout; SQLite, which has no statement timeout: a progress handler
    that interrupts the statement, set when the block starts.
    """
    with engine.connect() as connection, ExitStack() as undo:  # the checkout pre-pings with the short deadline
        raw = connection.connection.dbapi_connection
        seconds = statement_timeout_ms / 1000
        dialect = engine.dialect.name
        if dialect == "postgresql" and isinstance(raw, _DeadlineConnection):
            # As driver SQL: the round trip costs 0.11 ms, 0.24 through SQLAlchemy's select() of set_config.
            connection.exec_driver_sql(f"SET LOCAL statement_timeout = {int(statement_timeout_ms)}")
            raw.call_seconds = seconds + MARGIN if statement_timeout_ms else None
            undo.callback(delattr, raw, "call_seconds")  # the class's deadline again
        elif dialect in ("mysql", "mariadb") and hasattr(raw, "_read_timeout"):
            # PyMySQL sets the socket's timeout from this attribute before each read.
            undo.callback(setattr, raw, "_read_timeout", raw._read_timeout)
            raw._read_timeout = seconds or None
        elif dialect == "sqlite" and statement_timeout_ms:
            raw.set_progress_handler(_sqlite_deadline(seconds), _SQLITE_CHECK_EVERY)
            undo.callback(raw.set_progress_handler, None, 0)
        yield connection
