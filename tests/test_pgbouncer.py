"""Behind a real PgBouncer in transaction mode every worker answers every balance request.

The tests run Debian's ``pgbouncer`` as a plain process of their own (config in
tmp_path, a free loopback port, ``pool_mode = transaction`` unless a test says
otherwise, one or two server connections to the test database, so that clients
share them in a known order).
The app's workers are forked from the test process, as gunicorn forks them from
a preloaded master: each has its own client connection to PgBouncer and each
prepares the key lookup itself. Without ``/usr/sbin/pgbouncer`` the tests skip,
except under ``CI=true`` where that is a failure (``.ci/run`` installs it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import psycopg2
import pytest
from flask import Flask
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

import balance_service
from balance_service._internal import db_deadline
from balance_service.config import engine_options, normalize_database_url
from tests.helpers import stop

pytestmark = pytest.mark.parametrize("backend", ["postgresql"])

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
#: One USD of quota at the gateways' default units.
USD = 500000


def _require_pgbouncer() -> None:
    if os.access(PGBOUNCER, os.X_OK):
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"pgbouncer must be installed in CI ({PGBOUNCER} is missing): apt-get install pgbouncer")
    pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(database_url: str, port: int, pool_mode: str, pool_size: int) -> str:
    url = make_url(database_url)
    server = f"host={url.host or '127.0.0.1'} port={url.port or 5432} dbname={url.database} user={url.username}"
    if url.password:
        server += f" password={url.password}"
    # auth_type = any: clients log in without a password, as the user the database entry names.
    # The service sets statement_timeout with the "options" startup parameter, which PgBouncer
    # refuses unless told to ignore it (docs/deployment.md).
    return f"""[databases]
{url.database} = {server}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = any
pool_mode = {pool_mode}
default_pool_size = {pool_size}
max_client_conn = 50
ignore_startup_parameters = options
query_wait_timeout = 15
"""


@contextmanager
def running_pgbouncer(database_url: str, directory: Path, pool_mode: str, pool_size: int) -> Iterator[str]:
    """PgBouncer in front of ``database_url``; yields the URL of the same database through it.

    PgBouncer refuses to run as root: then it is told to become ``nobody`` after
    reading its config. It logs to ``pgbouncer.log`` in ``directory``.
    """
    _require_pgbouncer()
    log = directory / "pgbouncer.log"
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    for _attempt in range(3):
        port = _free_port()
        config = directory / "pgbouncer.ini"
        config.write_text(_config(database_url, port, pool_mode, pool_size))
        with log.open("ab") as out:
            process = subprocess.Popen([PGBOUNCER, *user, str(config)], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while process.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            if process.poll() is None:
                stop(process, timeout=10)
                raise AssertionError("pgbouncer did not listen in 15 s:\n" + log.read_text(errors="replace"))
            continue  # it exited (port taken between choosing and binding?): another port
        try:
            yield make_url(database_url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
        finally:
            stop(process, timeout=10)
        return
    raise AssertionError("pgbouncer did not start:\n" + log.read_text(errors="replace"))


@pytest.fixture
def pool_mode() -> str:
    """PgBouncer's ``pool_mode``: ``transaction`` (a server connection per transaction) unless a test says."""
    return "transaction"


@pytest.fixture
def pool_size() -> int:
    """PgBouncer's server connections to the database (``default_pool_size``)."""
    return 1


@pytest.fixture
def database_url(backend, postgres_url, tmp_path, pool_mode, pool_size):
    """The test database through PgBouncer: the app, its tables and its rows all go through it."""
    assert backend == "postgresql"
    with running_pgbouncer(postgres_url, tmp_path, pool_mode, pool_size) as url:
        yield url


class ForkedWorker:
    """A child process serving requests on ``app``, as gunicorn forks a worker from a preloaded master.

    It has a client connection of its own to PgBouncer (the app drops inherited
    connections after a fork) and answers each ``get`` with the status, the
    balance and how many warnings ``balance_service._internal.direct_reads`` has logged in it.
    """

    def __init__(self, app: Flask) -> None:
        ours, theirs = multiprocessing.Pipe()
        pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            try:
                balance_service.after_fork()  # what gunicorn's post_fork does (gunicorn_conf.py)
                ours.close()
                self._serve(app, theirs)
            finally:
                os._exit(0)
        theirs.close()
        self.pid, self.pipe = pid, ours

    @staticmethod
    def _serve(app: Flask, pipe) -> None:
        warnings = []
        counter = logging.Handler(logging.WARNING)
        counter.emit = warnings.append
        logging.getLogger("balance_service._internal.direct_reads").addHandler(counter)
        client = app.test_client()
        with contextlib.suppress(EOFError):
            while (request := pipe.recv()) is not None:
                key, path = request
                response = client.get(path, headers={"Authorization": f"Bearer {key}"})
                pipe.send((response.status_code, response.get_data(as_text=True), len(warnings)))

    def get(self, key: str, path: str = "/v1/balance") -> tuple[int, Decimal | str, int]:
        """(status, ``remain_balance`` or the error body, warnings logged so far in this worker)."""
        self.pipe.send((key, path))
        status, body, warnings = self.pipe.recv()
        return status, json.loads(body, parse_float=Decimal).get("remain_balance", body), warnings

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.pipe.send(None)
        self.pipe.close()
        deadline = time.monotonic() + 10
        while os.waitpid(self.pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                break
            time.sleep(0.01)


@pytest.fixture
def fork_worker(app):
    workers: list[ForkedWorker] = []

    def fork() -> ForkedWorker:
        workers.append(ForkedWorker(app))
        return workers[-1]

    yield fork
    for worker in workers:
        worker.stop()


@pytest.fixture
def keys(create_user, create_token):
    """Three keys with 1, 2 and 3 USD left, of owners with 10, 20 and 30 USD."""
    return [create_token(user_id=create_user(quota=10 * n * USD), remain_quota=n * USD) for n in (1, 2, 3)]


def test_two_workers_sharing_one_server_connection_answer_every_request(fork_worker, keys, database_url):
    """The second worker's PREPARE finds the first one's statement already on the server connection."""
    first, second = fork_worker(), fork_worker()
    for _ in range(3):
        for worker in (first, second, second, first):
            for n, key in enumerate(keys, 1):
                assert worker.get(key) == (200, n, 0)
                assert worker.get(key, "/v1/user/balance") == (200, 10 * n, 0)
    # Both workers use the one statement on the one server connection, under one name.
    with contextlib.closing(psycopg2.connect(database_url)) as through_pgbouncer:
        through_pgbouncer.autocommit = True
        with through_pgbouncer.cursor() as cur:
            cur.execute("SELECT name FROM pg_prepared_statements")
            names = [name for (name,) in cur.fetchall()]
    assert len(names) == 1, names
    assert names[0].startswith("balance_service_"), names


@pytest.mark.parametrize("pool_size", [2])
def test_a_worker_sent_to_a_server_connection_without_its_statement_answers_and_warns_once(
    fork_worker, keys, database_url
):
    """PgBouncer hands each statement to whichever server connection is free: a PREPARE does not follow."""
    first, second = fork_worker(), fork_worker()
    assert first.get(keys[0]) == (200, 1, 0)  # prepared on server connection 1
    # Another client holds server connection 1 in a transaction, so the next statement
    # goes to a new server connection 2, where nothing was prepared.
    with contextlib.closing(psycopg2.connect(database_url)) as other:
        with other.cursor() as cur:
            cur.execute("SELECT 1")
        assert first.get(keys[1]) == (200, 2, 1)  # the switch to plain statements, in the same request
        assert second.get(keys[1]) == (200, 2, 0)
        other.rollback()
    for _ in range(5):
        for n, key in enumerate(keys, 1):
            assert first.get(key) == (200, n, 1)
            assert first.get(key, "/v1/user/balance") == (200, 10 * n, 1)
            status, balance, warnings = second.get(key)
            assert (status, balance) == (200, n)
            assert warnings <= 1


@pytest.mark.parametrize(("pool_mode", "pool_size"), [("session", 10)])
def test_workers_behind_pgbouncer_in_session_mode_keep_their_prepared_statements(fork_worker, keys, database_url):
    """Each client has a server connection of its own while it is connected: nothing to fall back from.

    (Each worker is two clients, its pool's connection and its reader's, and the test's app a third.)
    """
    first, second = fork_worker(), fork_worker()
    for _ in range(3):
        for worker in (first, second):
            for n, key in enumerate(keys, 1):
                assert worker.get(key) == (200, n, 0)
                assert worker.get(key, "/v1/user/balance") == (200, 10 * n, 0)


def test_a_log_querys_own_statement_timeout_holds_behind_pgbouncer_and_ends_with_its_transaction(database_url):
    """It is set inside the log query's transaction, which PgBouncer keeps on one server connection, and ends
    with it: the next client there finds that connection's own timeout (PgBouncer drops the service's start-up
    one: 0 here)."""
    url = normalize_database_url(database_url)
    engine = create_engine(url, **engine_options(url, 3, 1000))
    try:
        with db_deadline.connect(engine, 60_000) as connection:
            assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "1min"
        with contextlib.closing(psycopg2.connect(database_url)) as other, other.cursor() as cur:
            cur.execute("SHOW statement_timeout")
            assert cur.fetchone()[0] == "0"
    finally:
        engine.dispose()
