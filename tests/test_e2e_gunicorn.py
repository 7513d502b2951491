"""End to end: the operator CLI seeds a database, real gunicorn serves it on loopback, HTTP calls it."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from tests.helpers import (
    clean_environment,
    created_key,
    flask_cli,
    running_gunicorn,
    temporary_mariadb_database,
    temporary_postgres_database,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def server_database(backend, tmp_path):
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'e2e.sqlite3'}"
        return
    temporary = temporary_postgres_database if backend == "postgresql" else temporary_mariadb_database
    with temporary() as url:
        yield url


def call(url, method="GET", headers=None):
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture
def served(server_database, tmp_path):
    env = clean_environment(DATABASE_URL=server_database, WEB_CONCURRENCY="2", BALANCE_UNIT="CNY")
    flask_cli(env, "init-db")
    flask_cli(env, "create-user", "erin", "--quota", "1000000")
    key = created_key(flask_cli(env, "create-token", "erin", "--quota", "250000"))
    log = tmp_path / "gunicorn.log"
    with running_gunicorn(env, log) as (base, _):
        for _ in range(100):
            try:
                if call(base + "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            pytest.fail("gunicorn did not come up:\n" + log.read_text())
        yield base, key, log


def test_gunicorn_serves_both_balances_over_http(served):
    base, key, _ = served
    status, headers, body = call(base + "/v1/user/balance", headers={"Authorization": f"Bearer {key}"})
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {
        "success": True,
        "remain_balance": 14.6,
        "used_balance": 0,
        "unlimited_quota": False,
        "unit": "CNY",
        "balance": 14.6,
        "used": 0,
    }
    # The documented path without /v1 answers the same body.
    assert call(base + "/user/balance", headers={"Authorization": f"Bearer {key}"})[2] == body
    status, _, body = call(base + "/v1/balance", headers={"Authorization": f"Bearer {key}-suffix"})
    assert (status, json.loads(body)["balance"]) == (200, 3.65)
    assert b'"balance":3.650000' in body


def test_gunicorn_answers_refusals_preflight_and_readiness(served):
    base, key, log = served
    status, _, body = call(base + "/v1/balance", headers={"Authorization": "Bearer sk-" + "x" * 48})
    assert (status, json.loads(body)["message"]) == (401, "Invalid token")
    status, headers, _ = call(
        base + "/v1/balance",
        method="OPTIONS",
        headers={"Origin": "http://page.test", "Access-Control-Request-Method": "GET"},
    )
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] in ("*", "http://page.test")
    status, headers, body = call(base + "/v1/user/balance", method="DELETE")
    assert status == 405 and "GET" in headers["Allow"] and json.loads(body)["success"] is False
    assert call(base + "/readyz")[0] == 200
    call(base + "/v1/balance?key=" + key[3:], headers={"Authorization": f"Bearer {key}"})
    time.sleep(0.2)
    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any(line.get("path") == "/v1/balance" and line.get("status") == 200 for line in lines), text
    assert key[3:11] not in text
