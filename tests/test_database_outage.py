"""A real PostgreSQL outage: 503 JSON at once, /readyz not ready, and recovery without a restart.

The server here is a private one (initdb in a temporary directory, a free
port), so stopping, freezing and restarting it disturbs no other test suite
using the machine's shared PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import time

import psycopg2
import pytest

from balance_service import create_app
from balance_service.config import DB_CONNECT_TIMEOUT
from balance_service.extensions import db
from balance_service.gateway import operations as ops
from tests.private_servers import running_postgres, serve_or_skip

pytestmark = pytest.mark.outage

#: "At once": well under the time a client or load balancer would wait.
QUICK = 5.0
UNAVAILABLE = {"success": False, "message": "Failed to get used quota"}


@pytest.fixture
def private_postgres():
    """A PostgreSQL server of this test's own (tests/private_servers.py), so stopping it disturbs no one."""
    yield from serve_or_skip(running_postgres)


def _app(url: str, **overrides):
    app = create_app({"TESTING": True, "DATABASE_URL": url, "AUTH_FAILURE_LIMIT": None, **overrides})
    with app.app_context():
        db.create_all()
    return app


def _make_key(app) -> str:
    with app.app_context():
        user = ops.create_user(f"outage-{time.monotonic_ns()}", quota=1_000_000)
        _, key = ops.create_token(user, quota=500_000)
    return key


def _timed(client, path: str, key: str | None = None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    started = time.monotonic()
    response = client.get(path, headers=headers)
    return response, time.monotonic() - started


def test_stopped_database_gives_503_at_once_and_the_same_app_recovers(private_postgres):
    app = _app(private_postgres.url)
    key = _make_key(app)
    client = app.test_client()
    for _ in range(2):  # the pool now holds a connection that the outage will kill
        assert client.get("/v1/balance", headers={"Authorization": f"Bearer {key}"}).status_code == 200

    private_postgres.stop()
    for path in ("/v1/balance", "/v1/user/balance"):
        response, elapsed = _timed(client, path, key)
        assert response.status_code == 503, path
        assert response.get_json() == UNAVAILABLE
        assert elapsed < QUICK, f"{path} took {elapsed:.2f}s"
    ready, elapsed = _timed(client, "/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["success"] is False
    assert elapsed < QUICK

    private_postgres.start()
    response = client.get("/v1/balance", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, "pool_pre_ping must replace the dead connections without a restart"
    assert response.get_json()["success"] is True
    assert client.get("/readyz").status_code == 200


def test_a_frozen_database_server_is_given_up_on_after_the_connect_timeout(private_postgres):
    """A server that accepts TCP but never answers (here: its postmaster stopped with SIGSTOP)."""
    key = _make_key(_app(private_postgres.url))
    pid = private_postgres.postmaster_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        fresh = create_app(
            {
                "TESTING": True,
                "DATABASE_URL": private_postgres.url,
                "AUTH_FAILURE_LIMIT": None,
            }
        ).test_client()
        response, elapsed = _timed(fresh, "/v1/balance", key)
        assert response.status_code == 503
        assert response.get_json() == UNAVAILABLE
        assert DB_CONNECT_TIMEOUT - 0.5 < elapsed < QUICK, f"took {elapsed:.2f}s; the connect timeout should bound it"
    finally:
        os.kill(pid, signal.SIGCONT)
    assert fresh.get("/v1/balance", headers={"Authorization": f"Bearer {key}"}).status_code == 200


def test_a_query_stuck_behind_a_lock_is_cancelled_by_the_statement_timeout(private_postgres):
    app = _app(private_postgres.url, DB_STATEMENT_TIMEOUT_MS=500)
    key = _make_key(app)
    client = app.test_client()
    assert client.get("/v1/balance", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    locker = psycopg2.connect(private_postgres.url)
    try:
        with locker.cursor() as cur:
            cur.execute("LOCK TABLE tokens IN ACCESS EXCLUSIVE MODE")  # held until rollback
        response, elapsed = _timed(client, "/v1/balance", key)
    finally:
        locker.rollback()
        locker.close()
    assert response.status_code == 503
    assert response.get_json() == UNAVAILABLE
    assert 0.4 < elapsed < QUICK, f"took {elapsed:.2f}s; DB_STATEMENT_TIMEOUT_MS=500 should bound it"
    assert client.get("/v1/balance", headers={"Authorization": f"Bearer {key}"}).status_code == 200
