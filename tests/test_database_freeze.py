"""A frozen database (its processes stopped with SIGSTOP) fails requests within the statement timeout + 1 s.

A stopped, swapped-out or partitioned server still has its kernel accept and
acknowledge TCP, so nothing on the wire says it is gone, and a statement
timeout enforced by the server itself never fires. Each test here freezes a
private server of its own (tests/private_servers.py, tests/clickhouse.py):
PostgreSQL and MariaDB as the gateway's database and as its log database, and
ClickHouse as the log store. While it is frozen every path that reads it
answers a JSON 503 within ``DB_STATEMENT_TIMEOUT_MS`` + 1 s; once it runs
again the next requests answer 200 (the silent connections were replaced);
under gunicorn no worker is killed for it.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from clickhouse_driver import Client

from balance_service import create_app
from balance_service.extensions import db
from balance_service.gateway import operations as ops
from balance_service.usage.source import CLICKHOUSE_EXTENSION
from tests.clickhouse import clickhouse_logs_ddl, reader_url, require_server, running_clickhouse
from tests.gateway_logs import GatewayTables
from tests.helpers import clean_environment, running_gunicorn
from tests.private_servers import children, frozen, running_mariadb, running_postgres, serve_or_skip

pytestmark = pytest.mark.outage

STATEMENT_TIMEOUT_MS = 1000
#: What the issue asks: a 503 within the statement timeout and one second.
BOUND = STATEMENT_TIMEOUT_MS / 1000 + 1
UNAVAILABLE = {"success": False, "message": "Failed to get used quota"}
NOVEMBER = "?start_date=2025-11-01&end_date=2025-12-01"
#: Every kind of read: the key lookup (the per-worker connection), the account (pool), billing and usage
#: (the log database's pool as well) and readiness.
PATHS = (
    "/v1/balance",
    "/v1/user/balance",
    "/v1/dashboard/billing/subscription",
    "/v1/dashboard/billing/usage" + NOVEMBER,
    "/v1/usage" + NOVEMBER,
    "/readyz",
)


@pytest.fixture
def private_postgres():
    yield from serve_or_skip(running_postgres)


@pytest.fixture
def private_mariadb():
    yield from serve_or_skip(running_mariadb)


@pytest.fixture
def prepared_app():
    """Builds apps on a URL (tables made) with their logs in another (each with the gateway's ``logs`` table);
    closes their connections at the end, while the server still runs."""
    apps = []

    def make(url: str, log_url: str | None = None):
        for tables_url in (url, log_url) if log_url else (url,):
            GatewayTables(tables_url).create_logs("new-api").engine.dispose()
        config = {"TESTING": True, "DATABASE_URL": url, "AUTH_FAILURE_LIMIT": None}
        if log_url:
            config["LOG_DATABASE_URL"] = log_url
        app = create_app({**config, "DB_STATEMENT_TIMEOUT_MS": STATEMENT_TIMEOUT_MS})
        apps.append(app)
        with app.app_context():
            db.create_all()
        return app

    yield make
    for app in apps:
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()  # the pools' connections and the lookup's own


def _make_key(app) -> str:
    with app.app_context():
        user = ops.create_user(f"freeze-{time.monotonic_ns()}", quota=1_000_000)
        _, key = ops.create_token(user, quota=500_000)
    return key


def _timed(client, path: str, key: str):
    started = time.monotonic()
    response = client.get(path, headers={"Authorization": f"Bearer {key}"})
    return response, time.monotonic() - started


def _assert_every_path_fails_within_the_bound(client, key: str, paths=PATHS) -> None:
    for path in paths:
        response, elapsed = _timed(client, path, key)
        assert response.status_code == 503, path
        body = response.get_json()
        if path == "/readyz":
            assert (body["success"], body["status"]) == (False, "unavailable")
        else:
            assert body == UNAVAILABLE, path
        assert elapsed < BOUND, f"{path} took {elapsed:.2f}s"


def _assert_every_path_answers(client, key: str, paths=PATHS) -> None:
    for path in paths:
        assert client.get(path, headers={"Authorization": f"Bearer {key}"}).status_code == 200, path


def test_a_frozen_postgresql_fails_each_request_within_the_bound_and_is_used_again_once_it_runs(
    private_postgres, prepared_app
):
    admin = psycopg2.connect(private_postgres.url)
    admin.autocommit = True
    admin.cursor().execute("CREATE DATABASE logs")
    admin.close()
    app = prepared_app(private_postgres.url, private_postgres.url.rsplit("/", 1)[0] + "/logs")
    key = _make_key(app)
    client = app.test_client()
    _assert_every_path_answers(client, key)  # the reader and both pools now hold connections the freeze silences

    with frozen(private_postgres.pids()):
        _assert_every_path_fails_within_the_bound(client, key)
        # Once more: now without any connection (each was dropped), a new one is given up on as quickly.
        _assert_every_path_fails_within_the_bound(client, key, PATHS[:1] + PATHS[-1:])

    _assert_every_path_answers(client, key)


def test_a_frozen_mariadb_fails_each_request_within_the_bound_and_is_used_again_once_it_runs(
    private_mariadb, prepared_app
):
    with private_mariadb.admin() as admin, admin.cursor() as cur:
        cur.execute("CREATE DATABASE logs CHARACTER SET utf8mb4")
    app = prepared_app(private_mariadb.url(), private_mariadb.url("logs"))
    key = _make_key(app)
    client = app.test_client()
    _assert_every_path_answers(client, key)

    with frozen([private_mariadb.pid]):
        _assert_every_path_fails_within_the_bound(client, key)
        _assert_every_path_fails_within_the_bound(client, key, PATHS[:1] + PATHS[-1:])

    _assert_every_path_answers(client, key)


def _clickhouse_pid(directory: Path) -> int:
    """The pid of the clickhouse-server started with its config in ``directory``."""
    config = f"--config-file={directory / 'config.xml'}".encode()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if config in cmdline.read_bytes().split(b"\0"):
                return int(cmdline.parent.name)
        except OSError:
            continue  # it exited meanwhile
    raise AssertionError(f"no clickhouse-server running with {config!r}")


@pytest.fixture
def private_clickhouse(tmp_path) -> Iterator[tuple[str, int]]:
    """A ClickHouse server of this test's own with new-api's ``logs`` table: (URL as the reader, server pid)."""
    require_server()
    with running_clickhouse(tmp_path / "clickhouse") as url:
        admin = Client.from_url(url)
        try:
            admin.execute(clickhouse_logs_ddl())
        finally:
            admin.disconnect()
        yield reader_url(url), _clickhouse_pid(tmp_path / "clickhouse")


def test_a_frozen_clickhouse_fails_usage_within_the_bound_and_is_used_again_once_it_runs(tmp_path, private_clickhouse):
    url, pid = private_clickhouse
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'gateway.sqlite3'}",
            "LOG_DATABASE_URL": url,
            "AUTH_FAILURE_LIMIT": None,
            "DB_STATEMENT_TIMEOUT_MS": STATEMENT_TIMEOUT_MS,
        }
    )
    with app.app_context():
        db.create_all()
    key = _make_key(app)
    client = app.test_client()
    usage = ("/v1/dashboard/billing/usage" + NOVEMBER, "/v1/usage" + NOVEMBER)
    try:
        _assert_every_path_answers(client, key, usage)  # the pool now holds an idle connection

        with frozen([pid]):
            _assert_every_path_fails_within_the_bound(client, key, usage * 2)  # idle connection, then a new one
            assert client.get("/v1/balance", headers={"Authorization": f"Bearer {key}"}).status_code == 200

        _assert_every_path_answers(client, key, usage)
    finally:
        app.extensions[CLICKHOUSE_EXTENSION].pool.close()


def _get(base: str, path: str, key: str) -> tuple[int, dict, float]:
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    started = time.monotonic()
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {key}"})
        response = connection.getresponse()
        return response.status, json.loads(response.read()), time.monotonic() - started
    finally:
        connection.close()


def _workers(master: int, count: int, timeout: float = 30) -> set[int]:
    """The pids of gunicorn's ``count`` workers, once they are all there."""
    deadline = time.monotonic() + timeout
    while len(pids := set(children(master))) < count:
        assert time.monotonic() < deadline, f"{count} workers did not start"
        time.sleep(0.05)
    return pids


def test_under_gunicorn_a_frozen_postgresql_costs_no_worker_and_the_next_request_after_it_is_answered(
    private_postgres, prepared_app, tmp_path
):
    app = prepared_app(private_postgres.url)
    key = _make_key(app)
    env = clean_environment(
        DATABASE_URL=private_postgres.url,
        DB_STATEMENT_TIMEOUT_MS=str(STATEMENT_TIMEOUT_MS),
        AUTH_FAILURE_LIMIT="off",
        WEB_CONCURRENCY="2",
        # Well above the bound, well below the 30 s a frozen server used to hold a request: a worker
        # stuck on the database would be killed during the freeze, and the log would say so.
        GUNICORN_CMD_ARGS="--timeout 6",
    )
    log = tmp_path / "gunicorn.log"
    with running_gunicorn(env, log) as (base, process):
        workers = _workers(process.pid, 2)
        for _ in range(4):  # the workers hold their connections
            assert _get(base, "/v1/balance", key)[0] == 200

        with frozen(private_postgres.pids()):
            for path in ("/v1/balance", "/v1/balance", "/v1/dashboard/billing/subscription", "/readyz"):
                status, body, elapsed = _get(base, path, key)
                assert status == 503, path
                assert body["success"] is False
                assert elapsed < BOUND, f"{path} took {elapsed:.2f}s"

        for _ in range(4):
            status, body, _elapsed = _get(base, "/v1/balance", key)
            assert (status, body["success"]) == (200, True)
        assert _workers(process.pid, 2) == workers, "no worker was replaced"
    assert "WORKER TIMEOUT" not in log.read_text()
