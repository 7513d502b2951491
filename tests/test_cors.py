"""Browser pages on other origins can call the API; preflights need no key."""

import socket

import pytest

from balance_service import create_app

# Whether and how this works cannot depend on the database: SQLite only (conftest.py).
pytestmark = pytest.mark.backend_independent

ORIGIN = "https://dashboard.example"
PREFLIGHT = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "GET",
    "Access-Control-Request-Headers": "authorization",
}


@pytest.mark.parametrize("path", ["/v1/balance", "/v1/user/balance"])
def test_preflight_is_answered_without_auth(client, path):
    response = client.options(path, headers=PREFLIGHT)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] in ("*", ORIGIN)
    assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()
    assert "GET" in response.headers["Access-Control-Allow-Methods"]
    assert response.headers["Access-Control-Max-Age"] == "86400"
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_successful_response_carries_cors_headers(client, auth, create_token):
    key = create_token(remain_quota=1)
    response = client.get("/v1/balance", headers=auth(key, Origin=ORIGIN))
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] in ("*", ORIGIN)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer sk-" + "n" * 48}])
def test_error_responses_carry_cors_headers_so_the_page_can_read_the_message(client, headers):
    response = client.get("/v1/balance", headers={"Origin": ORIGIN, **headers})
    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] in ("*", ORIGIN)


@pytest.mark.parametrize("app_config", [{"CORS_ORIGINS": "https://allowed.example"}])
def test_cors_origins_restricts_which_pages_may_read(client):
    allowed = client.options("/v1/balance", headers={**PREFLIGHT, "Origin": "https://allowed.example"})
    other = client.options("/v1/balance", headers={**PREFLIGHT, "Origin": "https://evil.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://allowed.example"
    assert "Access-Control-Allow-Origin" not in other.headers


@pytest.fixture
def app_from_cors_env(make_app, monkeypatch):
    """An app whose CORS_ORIGINS comes from the environment, as in production."""

    def factory(value):
        monkeypatch.setenv("CORS_ORIGINS", value)
        return make_app()

    return factory


def allowed_origin(client, origin):
    response = client.options("/v1/balance", headers={**PREFLIGHT, "Origin": origin})
    return response.headers.get("Access-Control-Allow-Origin")


def test_a_subdomain_wildcard_allows_subdomains_and_nothing_else(app_from_cors_env):
    client = app_from_cors_env("https://*.example.com, https://exact.example.org").test_client()
    for origin in ("https://a.example.com", "https://a.b.example.com", "https://A.Example.COM"):
        assert allowed_origin(client, origin) == origin, origin
    for origin in (
        "https://xexample.com.attacker.net",
        "https://example.com.attacker.net",
        "https://a.example.com.attacker.net",
        "https://attacker.net/.example.com",
        "https://a.xexample.com",
        "https://example.com",  # the bare domain is an entry of its own
        "http://a.example.com",
        "https://a.example.com:8443",
        "https://a_b.example.com",
        "https://exact.example.org.attacker.net",
    ):
        assert allowed_origin(client, origin) is None, origin
    assert allowed_origin(client, "https://exact.example.org") == "https://exact.example.org"


def test_a_subdomain_wildcard_with_a_port_needs_that_port(app_from_cors_env):
    client = app_from_cors_env("http://*.dev.example:8080").test_client()
    assert allowed_origin(client, "http://app.dev.example:8080") == "http://app.dev.example:8080"
    assert allowed_origin(client, "http://app.dev.example") is None
    assert allowed_origin(client, "http://app.dev.example:80801") is None


@pytest.mark.parametrize(
    "app_config",
    [{}, {"CORS_ORIGINS": "https://allowed.example"}, {"CORS_ORIGINS": f"https://allowed.example, {ORIGIN}"}],
)
def test_api_answers_carry_the_same_cors_headers_as_any_other_cors_route_every_time(client, auth, create_token):
    """The API's headers are remembered per Origin; a path Flask-CORS handles alone (a 404) is the reference."""
    key = create_token(remain_quota=1)

    def cors_headers(response):
        return sorted((k, v) for k, v in response.headers.items() if k.startswith("Access-Control") or k == "Vary")

    for origin in (None, ORIGIN, "https://allowed.example", "https://ALLOWED.example", "https://evil.example"):
        headers = {"Origin": origin} if origin else {}
        reference = cors_headers(client.get("/v1/no-such-route", headers=headers))
        for _ in range(2):  # worked out, then remembered
            for request_headers, status in ((headers, 401), (auth(key, **headers), 200)):
                response = client.get("/v1/balance", headers=request_headers)
                assert response.status_code == status
                assert cors_headers(response) == reference, origin


def test_preflight_of_the_alerts_endpoint_needs_no_database():
    """A preflight carries no key: it is answered even when the database is down (no table check first)."""
    with socket.socket() as sock:  # a loopback port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = create_app(
        {
            "TESTING": True,
            "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/gone",
            "AUTH_FAILURE_LIMIT": None,
        }
    )
    headers = {**PREFLIGHT, "Access-Control-Request-Method": "POST"}
    response = app.test_client().options("/v1/user/balance/alerts", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Access-Control-Allow-Origin"] in ("*", ORIGIN)
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
