"""Log queries have a statement deadline of their own: twice ``DB_STATEMENT_TIMEOUT_MS``, never without limit.

A usage figure may sum a year of an account's log rows where a balance lookup
reads one row, so each query of the gateway's logs (usage, dated billing, the
forecast, the roll-up) may take ``LOG_STATEMENT_FACTOR`` times the statement
timeout, on the server and on the client, and is cut off there. Slow here means
slow on the server: ``pg_sleep``/``SLEEP``/ClickHouse's ``sleep`` for the
deadline itself, a table lock the test holds (as a gateway operator's
``ALTER TABLE`` would) for a usage request, and a long recursive query on SQLite,
which has no statement timeout and is interrupted by the service's own handler.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg2
import pymysql
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from balance_service._internal import db_deadline
from balance_service.config import LOG_STATEMENT_FACTOR, ConfigError, Settings, engine_options, normalize_database_url
from balance_service.usage.clickhouse import ClickHousePool, LogStoreError, client_options, given_in_url
from tests.helpers import clean_environment, running_gunicorn

STATEMENT_TIMEOUT_MS = 1000
LOG_TIMEOUT_MS = LOG_STATEMENT_FACTOR * STATEMENT_TIMEOUT_MS
#: Longer than a balance lookup may take, on the server (1 s) and on the client (1.5 s); within a log query's 2 s.
BETWEEN = 1.7
#: A log query past its deadline fails within it and a second.
BOUND = LOG_TIMEOUT_MS / 1000 + 1
NOVEMBER = "?start_date=2025-11-01&end_date=2025-12-01"


def test_a_log_query_may_take_twice_the_statement_timeout():
    settings = Settings.from_env({}, DB_STATEMENT_TIMEOUT_MS="1500")
    assert settings.log_statement_timeout_ms == 3000
    assert Settings.from_env({}, DB_STATEMENT_TIMEOUT_MS="0").log_statement_timeout_ms == 0  # no limit: none
    # Twice the largest is still a statement_timeout PostgreSQL takes (a 32-bit integer of milliseconds).
    assert Settings.from_env({}, DB_STATEMENT_TIMEOUT_MS="1000000000").log_statement_timeout_ms < 2**31
    with pytest.raises(ConfigError, match="DB_STATEMENT_TIMEOUT_MS must be at most"):
        Settings.from_env({}, DB_STATEMENT_TIMEOUT_MS="1200000000")


def _engine(url: str):
    """The service's engine settings, one connection: what one statement changes, the next one meets."""
    url = normalize_database_url(url)
    return create_engine(url, pool_size=1, max_overflow=0, **engine_options(url, 3, STATEMENT_TIMEOUT_MS))


#: A statement the server works on for ``seconds``.
SLEEP = {
    "postgresql": lambda seconds: text(f"SELECT pg_sleep({seconds})"),
    "mariadb": lambda seconds: text(f"SELECT SLEEP({seconds})"),
}


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_a_log_query_runs_past_the_statement_timeout_but_not_past_its_own(database_url, backend):
    engine = _engine(database_url)
    slow = SLEEP[backend]

    def on_log_connection(statement) -> None:
        with db_deadline.connect(engine, LOG_TIMEOUT_MS) as connection:
            connection.execute(statement).all()

    def on_plain_connection(statement) -> None:
        with engine.connect() as connection:
            connection.execute(statement).all()

    try:
        on_log_connection(slow(BETWEEN))
        # The same pooled connection afterwards: the short deadline again. A little over it is too long now
        # (on PostgreSQL the server's statement_timeout says so, on MariaDB the client's read timeout).
        with pytest.raises(OperationalError):
            on_plain_connection(slow(1.2))
        if backend == "postgresql":  # and the client's own deadline, with the server's timeout off
            with engine.connect() as connection, pytest.raises(OperationalError) as failed:
                connection.execute(text("SET LOCAL statement_timeout = 0"))
                connection.execute(slow(BETWEEN))
            assert isinstance(failed.value.orig, db_deadline.DeadlineExceeded)
        started = time.monotonic()
        with pytest.raises(OperationalError):
            on_log_connection(slow(30))
        assert time.monotonic() - started < BOUND
        on_plain_connection(text("SELECT 1"))  # a failed log query leaves a usable pool
    finally:
        engine.dispose()


def count_to(n: int):
    """A statement that keeps SQLite's virtual machine busy: counting to ``n`` in a recursive query."""
    return text(f"WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {n}) SELECT count(*) FROM c")


def test_on_sqlite_a_log_query_is_interrupted_at_its_deadline_and_nothing_after_it(tmp_path):
    """SQLite has no statement timeout; the service's progress handler ends a log query, and only that one."""
    engine = _engine(f"sqlite:///{tmp_path / 'logs.sqlite3'}")
    try:
        started = time.monotonic()
        with pytest.raises(OperationalError, match="interrupted"), db_deadline.connect(engine, 50) as connection:
            connection.execute(count_to(50_000_000)).all()  # ten seconds of work
        assert time.monotonic() - started < 5
        with engine.connect() as connection:  # the same connection, its deadline long past
            # Thousands of instructions: interrupted at once if the handler were still there.
            assert connection.execute(count_to(100_000)).scalar() == 100_000
    finally:
        engine.dispose()


def test_on_clickhouse_a_log_query_runs_past_the_statement_timeout_but_not_past_its_own(clickhouse_url):
    pool = ClickHousePool(*client_options(clickhouse_url, 3, STATEMENT_TIMEOUT_MS))
    try:
        assert pool.query(f"SELECT sleep({BETWEEN})", {}, LOG_TIMEOUT_MS) == [(0,)]
        with pytest.raises(LogStoreError):
            pool.query(f"SELECT sleep({BETWEEN})", {})  # the same connection: the pool's own timeout again
        started = time.monotonic()
        with pytest.raises(LogStoreError):
            pool.query("SELECT sleep(3) + sleep(3)", {}, LOG_TIMEOUT_MS)
        assert time.monotonic() - started < BOUND
        assert pool.query("SELECT 1", {}) == [(1,)]
    finally:
        pool.close()


def test_on_clickhouse_a_timeout_set_in_the_url_wins_for_log_queries_too(clickhouse_url):
    url = clickhouse_url + ("&" if "?" in clickhouse_url else "?") + "send_receive_timeout=1"
    pool = ClickHousePool(*client_options(url, 3, STATEMENT_TIMEOUT_MS), given_in_url(url))
    try:
        with pytest.raises(LogStoreError):
            pool.query(f"SELECT sleep({BETWEEN})", {}, LOG_TIMEOUT_MS)
    finally:
        pool.close()


@contextmanager
def logs_locked(backend: str, url: str) -> Iterator[Callable[[], None]]:
    """Hold a lock that stops every read of ``logs`` (as an ``ALTER TABLE`` would); yields the release."""
    u = make_url(url)
    if backend == "postgresql":
        locker = psycopg2.connect(host=u.host, port=u.port or 5432, user=u.username, dbname=u.database)
        with locker.cursor() as cur:
            cur.execute("LOCK TABLE logs IN ACCESS EXCLUSIVE MODE")
        release = locker.rollback
    else:
        locker = pymysql.connect(
            host=u.host, port=u.port or 3306, user=u.username, password=u.password or "", database=u.database
        )
        with locker.cursor() as cur:
            cur.execute("LOCK TABLES logs WRITE")

        def release() -> None:
            with locker.cursor() as cur:
                cur.execute("UNLOCK TABLES")

    lock = threading.Lock()
    released = []

    def release_once() -> None:
        with lock:
            if not released:
                released.append(release())

    try:
        yield release_once
    finally:
        release_once()
        locker.close()


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
@pytest.mark.parametrize("app_config", [{"DB_STATEMENT_TIMEOUT_MS": str(STATEMENT_TIMEOUT_MS)}])
def test_usage_waits_on_its_logs_longer_than_a_balance_lookup_and_then_answers_503(
    client, auth, november, database_url, backend
):
    headers = auth(november.work)
    expected = client.get("/v1/usage" + NOVEMBER, headers=headers).get_json()  # the layout of logs is now known
    assert expected["success"] is True

    with logs_locked(backend, database_url) as release:
        timer = threading.Timer(BETWEEN, release)
        timer.start()
        try:
            answer = client.get("/v1/usage" + NOVEMBER, headers=headers)
        finally:
            timer.cancel()
    assert answer.status_code == 200
    assert answer.get_json() == expected

    with logs_locked(backend, database_url):
        started = time.monotonic()
        answer = client.get("/v1/usage" + NOVEMBER, headers=headers)
        waited = time.monotonic() - started
        assert client.get("/v1/balance", headers=headers).status_code == 200  # balances never read the logs
    assert answer.status_code == 503
    assert answer.get_json() == {"success": False, "message": "Failed to get used quota"}
    assert LOG_TIMEOUT_MS / 1000 - 0.1 < waited < BOUND
    assert client.get("/v1/usage" + NOVEMBER, headers=headers).get_json() == expected


@pytest.mark.e2e
@pytest.mark.backend_independent
@pytest.mark.parametrize(
    ("statement_timeout_ms", "gunicorn_args", "warned"),
    [("8000", "", True), ("5000", "", False), ("8000", "--timeout 40", False), ("8000", "--timeout 0", False)],
)
def test_gunicorn_warns_when_a_usage_request_could_outlast_its_worker_timeout(
    tmp_path, statement_timeout_ms, gunicorn_args, warned
):
    """Two log queries of 16 s outlast the default 30 s; not 40 s, nor no worker timeout at all (0)."""
    env = clean_environment(
        DATABASE_URL=f"sqlite:///{tmp_path / 'w.sqlite3'}",
        WEB_CONCURRENCY="1",
        DB_STATEMENT_TIMEOUT_MS=statement_timeout_ms,
        GUNICORN_CMD_ARGS=gunicorn_args,
    )
    log = tmp_path / "gunicorn.log"
    with running_gunicorn(env, log):
        pass
    text = log.read_text()
    assert ("[WARNING] DB_STATEMENT_TIMEOUT_MS=8000 lets each log query run 16 s" in text) == warned, text
    if warned:
        assert 'GUNICORN_CMD_ARGS="--timeout N" above 34' in text
