"""``OPTIONS`` without ``Origin`` (not a browser's preflight) answers 204 with ``Allow``, typed JSON, never HTML.

Flask's own answer was an empty ``text/html`` 200 (issue 21). Preflights,
which carry ``Origin``, keep their answer (tests/test_cors.py).
"""

from __future__ import annotations

import pytest

# Whether and how this works cannot depend on the database: SQLite only (conftest.py).
pytestmark = pytest.mark.backend_independent


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/v1/balance", {"GET", "HEAD", "OPTIONS"}),
        ("/dashboard/billing/usage", {"GET", "HEAD", "OPTIONS"}),
        ("/v1/user/balance/alerts", {"GET", "HEAD", "POST", "OPTIONS"}),
        ("/healthz", {"GET", "HEAD", "OPTIONS"}),
    ],
)
def test_options_without_origin_lists_the_methods_in_a_json_204(client, path, methods):
    response = client.options(path)
    assert response.status_code == 204
    assert response.mimetype == "application/json"
    assert response.data == b""
    assert set(response.headers["Allow"].split(", ")) == methods


def test_options_needs_no_key_and_is_not_counted_as_a_failed_authentication(make_app):
    client = make_app(AUTH_FAILURE_LIMIT="1/minute").test_client()
    for _ in range(3):
        assert client.options("/v1/balance").status_code == 204
    assert client.get("/v1/balance").status_code == 401  # the first failure: not yet blocked


def test_options_of_an_unknown_path_is_a_json_404(client):
    response = client.options("/v1/nothing-here")
    assert response.status_code == 404
    assert response.get_json()["success"] is False


def test_a_preflight_keeps_its_200_with_the_cors_headers(client):
    response = client.options(
        "/v1/balance", headers={"Origin": "https://dashboard.example", "Access-Control-Request-Method": "GET"}
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "https://dashboard.example")
