"""Every response carries X-Request-ID: the caller's if well formed, a fresh one otherwise."""

from __future__ import annotations

import re

import pytest

from balance_service import create_app

# Whether and how this works cannot depend on the database: SQLite only (conftest.py).
pytestmark = pytest.mark.backend_independent

FRESH = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def test_a_well_formed_request_id_is_echoed(client, create_token, auth):
    key = create_token(remain_quota=1)
    response = client.get("/v1/balance", headers=auth(key, **{"X-Request-ID": "edge-7f3a.42_x"}))
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "edge-7f3a.42_x"


def test_without_a_request_id_each_response_gets_a_fresh_one(client):
    first = client.get("/healthz").headers["X-Request-ID"]
    second = client.get("/healthz").headers["X-Request-ID"]
    assert FRESH.fullmatch(first) and FRESH.fullmatch(second)
    assert first != second


@pytest.mark.parametrize("bad", ["", "a" * 129, "has space", "semi;colon", "<script>", "ünïcode"])
def test_a_malformed_request_id_is_replaced(client, bad):
    response = client.get("/healthz", headers={"X-Request-ID": bad.encode("utf-8").decode("latin-1")})
    assert FRESH.fullmatch(response.headers["X-Request-ID"])


def test_the_longest_allowed_request_id_is_kept(client):
    assert client.get("/healthz", headers={"X-Request-ID": "a" * 128}).headers["X-Request-ID"] == "a" * 128


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/v1/balance", 401), ("GET", "/nowhere", 404), ("POST", "/v1/balance", 405), ("GET", "/metrics", 200)],
)
def test_error_and_other_responses_carry_it_too(client, method, path, status):
    response = client.open(path, method=method, headers={"X-Request-ID": "trace-1"})
    assert response.status_code == status
    assert response.headers["X-Request-ID"] == "trace-1"


def test_database_failures_carry_it(auth):
    app = create_app({"TESTING": True, "DATABASE_URL": "sqlite:////nonexistent-dir/x/balance.sqlite3"})
    response = app.test_client().get("/v1/balance", headers=auth("sk-" + "a" * 48, **{"X-Request-ID": "db-down"}))
    assert response.status_code == 503
    assert response.headers["X-Request-ID"] == "db-down"


def test_browser_pages_on_other_origins_may_read_it(client):
    response = client.get("/v1/balance", headers={"Origin": "https://dashboard.example"})
    exposed = {h.strip().lower() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"x-request-id", "retry-after"} <= exposed
