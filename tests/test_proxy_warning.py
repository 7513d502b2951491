"""A proxy in front but ``PROXY_FIX_X_FOR=0``: every client would share the proxy's address, so the service says so.

With the shipped nginx and the default 0, one client's bad keys made the
failed-auth limit refuse another client's valid key (issue 21). The first
request that carries ``X-Forwarded-For`` while ProxyFix is off logs one warning.
"""

from __future__ import annotations

import logging

import pytest

# Whether a header is looked at cannot depend on the database: SQLite only (conftest.py).
pytestmark = pytest.mark.backend_independent

FORWARDED = {"X-Forwarded-For": "203.0.113.9"}


def proxy_warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.WARNING and "PROXY_FIX_X_FOR" in r.getMessage()]


def test_forwarded_requests_without_proxy_fix_log_one_warning_for_many_requests(client, caplog):
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            assert client.get("/healthz", headers=FORWARDED).status_code == 200
        client.get("/v1/balance", headers=FORWARDED)
    [warning] = proxy_warnings(caplog)
    message = warning.getMessage()
    assert "X-Forwarded-For" in message and "AUTH_FAILURE_LIMIT" in message
    assert "203.0.113.9" not in message  # says what to set, not who the client was


@pytest.mark.parametrize("app_config", [{"PROXY_FIX_X_FOR": 1}])
def test_with_proxy_fix_set_forwarded_requests_log_nothing(client, caplog):
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert client.get("/healthz", headers=FORWARDED).status_code == 200
    assert proxy_warnings(caplog) == []


def test_requests_without_the_header_log_nothing(client, caplog):
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
    assert proxy_warnings(caplog) == []


def test_each_app_warns_for_itself(make_app, caplog):
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            client = make_app().test_client()
            client.get("/healthz", headers=FORWARDED)
            client.get("/healthz", headers=FORWARDED)
    assert len(proxy_warnings(caplog)) == 2
