"""Failed authentications per client address are limited: past the limit the address gets 429."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
import uuid

import pytest
import redis
from redis.connection import SSLConnection, UnixDomainSocketConnection

from balance_service import create_app, ratelimit
from balance_service.config import ConfigError, Rate, Settings, parse_rate, redis_options
from balance_service.extensions import db
from balance_service.ratelimit import LocalCounts, client_key
from tests.helpers import clean_environment, running_gunicorn
from tests.redis_server import PASSWORD, USER, USER_PASSWORD, running_redis

# Whether and how this works cannot depend on the database: SQLite only (conftest.py).
pytestmark = pytest.mark.backend_independent

BODY = {"success": False, "message": "Too many failed authentication attempts; retry later"}
BAD_KEY = {"Authorization": "Bearer sk-" + "b" * 48}
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def from_address(address: str) -> dict:
    return {"environ_base": {"REMOTE_ADDR": address}}


def a_new_address() -> dict:
    """An address of its own, so that tests (and concurrent test runs) on one Redis do not meet."""
    return from_address(f"2001:db8:{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}::1")


@pytest.fixture
def limited(make_app):
    """An app that allows 3 failed authentications per address per minute."""
    return make_app(AUTH_FAILURE_LIMIT="3/minute")


def fail(client, times: int, **kwargs) -> None:
    kwargs.setdefault("headers", BAD_KEY)
    for _ in range(times):
        assert client.get("/v1/balance", **kwargs).status_code == 401


def test_the_attempt_after_the_limit_gets_429_with_retry_after(limited):
    client = limited.test_client()
    fail(client, 3)
    response = client.get("/v1/balance", headers=BAD_KEY)
    assert response.status_code == 429
    assert response.get_json() == BODY
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_a_blocked_address_is_refused_even_with_a_valid_key(limited, create_token, auth):
    key = create_token(remain_quota=1)
    client = limited.test_client()
    assert client.get("/v1/balance", headers=auth(key)).status_code == 200
    fail(client, 3)
    for path in ("/v1/balance", "/v1/user/balance"):
        assert client.get(path, headers=auth(key)).status_code == 429


def test_another_address_is_unaffected(limited, create_token, auth):
    key = create_token(remain_quota=1)
    client = limited.test_client()
    fail(client, 3, **from_address("198.51.100.1"))
    assert client.get("/v1/balance", headers=BAD_KEY, **from_address("198.51.100.1")).status_code == 429
    assert client.get("/v1/balance", headers=BAD_KEY, **from_address("198.51.100.2")).status_code == 401
    assert client.get("/v1/balance", headers=auth(key), **from_address("198.51.100.2")).status_code == 200


def test_ipv6_clients_are_counted_by_their_64_network(limited):
    """One IPv6 host holds a whole /64: a new address per attempt must not buy a new budget."""
    client = limited.test_client()
    for address in ("2001:db8:aa:bb::1", "2001:db8:aa:bb::2", "2001:db8:aa:bb:abcd:ef01:2345:6789"):
        fail(client, 1, **from_address(address))
    assert client.get("/v1/balance", headers=BAD_KEY, **from_address("2001:db8:aa:bb::ffff")).status_code == 429
    # The neighbouring /64 is someone else.
    assert client.get("/v1/balance", headers=BAD_KEY, **from_address("2001:db8:aa:bc::1")).status_code == 401


def test_an_ipv4_mapped_address_counts_as_the_ipv4_client(limited):
    client = limited.test_client()
    fail(client, 3, **from_address("::ffff:198.51.100.4"))
    assert client.get("/v1/balance", headers=BAD_KEY, **from_address("198.51.100.4")).status_code == 429


def test_clients_without_an_address_are_neither_counted_nor_blocked(limited, create_token, auth):
    """gunicorn on a unix socket gives every client the empty address; one count would lock all of them out."""
    client = limited.test_client()
    fail(client, 10, **from_address(""))
    key = create_token(remain_quota=1)
    assert client.get("/v1/balance", headers=auth(key), **from_address("")).status_code == 200
    fail(client, 3, **from_address("198.51.100.5"))  # other clients are still counted


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("", None),
        (None, None),
    ],
)
def test_client_key(address, key):
    assert client_key(address) == key


def test_successful_requests_do_not_count(limited, create_token, auth):
    key = create_token(remain_quota=1)
    client = limited.test_client()
    for _ in range(10):
        assert client.get("/v1/balance", headers=auth(key)).status_code == 200
    fail(client, 3)


def test_probes_metrics_and_preflights_are_never_blocked(limited):
    client = limited.test_client()
    fail(client, 3)
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/metrics").status_code == 200
    preflight = {"Origin": "https://a.example", "Access-Control-Request-Method": "GET"}
    assert client.options("/v1/balance", headers=preflight).status_code == 200


def test_the_429_can_be_read_by_a_page_on_another_origin(limited):
    client = limited.test_client()
    fail(client, 3)
    response = client.get("/v1/balance", headers={**BAD_KEY, "Origin": "https://a.example"})
    assert response.status_code == 429
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "https://a.example")
    assert "retry-after" in response.headers["Access-Control-Expose-Headers"].lower()


def test_the_429_gets_its_request_id_and_is_counted_and_logged_like_any_answer(limited, capsys):
    """The request hooks' order: the 429 and the 401s before it pass through the request-id, metrics and log hook."""
    client = limited.test_client()
    fail(client, 3)
    capsys.readouterr()
    response = client.get("/v1/balance", headers={**BAD_KEY, "X-Request-ID": "blocked-1"})
    assert response.status_code == 429
    assert response.headers["X-Request-ID"] == "blocked-1"
    [line] = [json.loads(line) for line in capsys.readouterr().err.splitlines() if '"route"' in line]
    assert (line["status"], line["request_id"]) == (429, "blocked-1")
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'route="/v1/balance",status="401"} 3.0' in metrics
    assert 'route="/v1/balance",status="429"} 1.0' in metrics


@pytest.fixture
def app_from_environment(app):
    """An app configured only by the environment (``make_app`` turns the limit off), on ``app``'s tables."""
    built = []

    def factory():
        built.append(create_app({"TESTING": True, "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"]}))
        return built[-1]

    yield factory
    for other in built:
        with other.app_context():
            db.session.remove()
            db.engine.dispose()


def test_by_default_the_21st_failure_in_a_minute_is_refused(app_from_environment):
    client = app_from_environment().test_client()
    fail(client, 20)
    assert client.get("/v1/balance", headers=BAD_KEY).status_code == 429


def test_auth_failure_limit_off_in_the_environment_never_answers_429(app_from_environment, monkeypatch):
    monkeypatch.setenv("AUTH_FAILURE_LIMIT", "off")
    fail(app_from_environment().test_client(), 50)


def test_forwarded_for_is_ignored_unless_a_proxy_is_trusted(make_app):
    client = make_app(AUTH_FAILURE_LIMIT="3/minute").test_client()
    for i in range(3):
        fail(client, 1, headers={**BAD_KEY, "X-Forwarded-For": f"203.0.113.{i}"})
    # A client cannot escape the limit by inventing X-Forwarded-For values.
    response = client.get("/v1/balance", headers={**BAD_KEY, "X-Forwarded-For": "203.0.113.99"})
    assert response.status_code == 429


def test_behind_a_trusted_proxy_each_forwarded_client_is_counted_on_its_own(make_app):
    client = make_app(AUTH_FAILURE_LIMIT="3/minute", PROXY_FIX_X_FOR=1).test_client()
    fail(client, 3, headers={**BAD_KEY, "X-Forwarded-For": "203.0.113.1"})
    blocked = client.get("/v1/balance", headers={**BAD_KEY, "X-Forwarded-For": "203.0.113.1"})
    other = client.get("/v1/balance", headers={**BAD_KEY, "X-Forwarded-For": "203.0.113.2"})
    assert (blocked.status_code, other.status_code) == (429, 401)


class Clock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def redis_url():
    with redis.Redis.from_url(REDIS_URL, socket_timeout=2, retry=None) as connection:
        try:
            connection.ping()
        except redis.RedisError as e:
            if os.environ.get("CI") == "true":
                pytest.fail(f"Redis must be reachable in CI: {e}")
            pytest.skip(f"Redis not reachable at {REDIS_URL}")
    return REDIS_URL


def test_with_redis_storage_two_app_instances_share_the_count(make_app, redis_url):
    first = make_app(AUTH_FAILURE_LIMIT="3/minute", RATELIMIT_STORAGE_URI=redis_url).test_client()
    second = make_app(AUTH_FAILURE_LIMIT="3/minute", RATELIMIT_STORAGE_URI=redis_url).test_client()
    # An address of its own, so that concurrent test runs on the same Redis do not meet.
    address = from_address(f"2001:db8:{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}::1")
    fail(first, 2, **address)
    fail(second, 1, **address)
    response = first.get("/v1/balance", headers=BAD_KEY, **address)
    assert response.status_code == 429
    assert second.get("/v1/balance", headers=BAD_KEY, **address).status_code == 429
    assert int(response.headers["Retry-After"]) >= 1


def test_an_unreachable_redis_does_not_take_the_service_down(make_app, create_token, auth):
    """Down at start-up (connection refused): the service starts, and lets requests through."""
    app = make_app(AUTH_FAILURE_LIMIT="3/minute", RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0")
    client = app.test_client()
    key = create_token(remain_quota=1)
    fail(client, 5)
    assert client.get("/v1/balance", headers=auth(key)).status_code == 200


def test_a_memory_storage_uri_written_in_capitals_counts_in_memory(make_app):
    """The setting is taken as memory:// when read (URL schemes are case-insensitive), so the limiter must
    count in memory too, not stop the start-up with "must be a redis:// URL, not memory://"."""
    assert Settings.from_env({"RATELIMIT_STORAGE_URI": "Memory://"}).ratelimit_storage_uri == "Memory://"
    client = make_app(AUTH_FAILURE_LIMIT="3/minute", RATELIMIT_STORAGE_URI="Memory://").test_client()
    fail(client, 3)
    assert client.get("/v1/balance", headers=BAD_KEY).status_code == 429


def test_the_default_limit_is_20_failures_a_minute():
    defaults = Settings.from_env({})
    assert defaults.auth_failure_limit == Rate(20, 60)
    assert defaults.ratelimit_storage_uri == "memory://"
    assert defaults.proxy_fix_x_for == 0


@pytest.mark.parametrize("off", ["0", "off", "OFF", ""])
def test_the_limit_can_be_switched_off(off):
    assert Settings.from_env({"AUTH_FAILURE_LIMIT": off}).auth_failure_limit is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AUTH_FAILURE_LIMIT", "lots"),
        ("AUTH_FAILURE_LIMIT", "0/minute"),
        ("AUTH_FAILURE_LIMIT", "5/minute;100/day"),
        ("RATELIMIT_STORAGE_URI", "memcached://127.0.0.1:11211"),
        ("PROXY_FIX_X_FOR", "-1"),
    ],
)
def test_bad_settings_stop_the_service_at_start_up(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("workers", "settings", "warned"),
    [
        ("2", {}, True),
        ("1", {}, False),
        ("2", {"RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/0"}, False),
        ("2", {"AUTH_FAILURE_LIMIT": "off"}, False),
    ],
)
def test_gunicorn_warns_at_start_up_when_several_workers_count_in_memory(tmp_path, workers, settings, warned):
    """Each worker would allow the whole limit, and a recycled one forgets its counts: production uses Redis."""
    env = clean_environment(DATABASE_URL=f"sqlite:///{tmp_path / 'w.sqlite3'}", WEB_CONCURRENCY=workers, **settings)
    log = tmp_path / "gunicorn.log"
    with running_gunicorn(env, log):
        pass
    text = log.read_text()
    warning = "[WARNING] AUTH_FAILURE_LIMIT is counted in memory by each of the 2 workers"
    assert (warning in text) == warned, text
    if warned:
        assert "RATELIMIT_STORAGE_URI to a Redis URL" in text


def test_with_redis_a_worker_that_saw_an_address_unblocked_lets_at_most_one_failure_through(
    make_app, create_token, auth, redis_url
):
    """For a second it trusts its own check; its first 401 from the address ends that trust."""
    first = make_app(AUTH_FAILURE_LIMIT="3/minute", RATELIMIT_STORAGE_URI=redis_url).test_client()
    second = make_app(AUTH_FAILURE_LIMIT="3/minute", RATELIMIT_STORAGE_URI=redis_url).test_client()
    address = from_address(f"2001:db8:{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}::1")
    key = create_token(remain_quota=1)
    assert first.get("/v1/balance", headers=auth(key), **address).status_code == 200  # found unblocked
    fail(second, 3, **address)  # blocked in Redis by another worker
    # The one that may get through (a 429 if the second of trust is already over on a slow machine).
    assert first.get("/v1/balance", headers=BAD_KEY, **address).status_code in (401, 429)
    for headers in (BAD_KEY, auth(key)):
        assert first.get("/v1/balance", headers=headers, **address).status_code == 429


def test_in_memory_the_block_ends_when_the_oldest_failure_leaves_the_moving_window(make_app):
    app = make_app(AUTH_FAILURE_LIMIT="2/2 seconds", RATELIMIT_STORAGE_URI="memory://")
    clock = app.extensions[ratelimit._EXTENSION].clock = Clock()
    client, address = app.test_client(), a_new_address()
    fail(client, 1, **address)
    clock.now += 1
    fail(client, 1, **address)
    blocked = client.get("/v1/balance", headers=BAD_KEY, **address)
    assert (blocked.status_code, blocked.headers["Retry-After"]) == (429, "1")
    clock.now += 1.1  # the first failure has left the window, the second has not: one more attempt
    fail(client, 1, **address)
    assert client.get("/v1/balance", headers=BAD_KEY, **address).status_code == 429


def test_with_redis_the_block_ends_when_the_oldest_failure_leaves_the_moving_window(make_app, redis_url):
    """Redis counts by its own clock (hosts' clocks differ), so this test waits for it."""
    client = make_app(AUTH_FAILURE_LIMIT="2/2 seconds", RATELIMIT_STORAGE_URI=redis_url).test_client()
    address = a_new_address()
    fail(client, 1, **address)
    time.sleep(1)
    fail(client, 1, **address)
    blocked = client.get("/v1/balance", headers=BAD_KEY, **address)
    assert (blocked.status_code, blocked.headers["Retry-After"]) == (429, "1")
    time.sleep(1.1)  # the first failure has left the window, the second has not: one more attempt
    fail(client, 1, **address)
    assert client.get("/v1/balance", headers=BAD_KEY, **address).status_code == 429


def test_in_memory_at_most_the_documented_number_of_addresses_are_kept_the_oldest_forgotten_first(make_app):
    app = make_app(AUTH_FAILURE_LIMIT="2/minute", RATELIMIT_STORAGE_URI="memory://")
    counts = app.extensions[ratelimit._EXTENSION]
    counts.max_addresses = 3
    client = app.test_client()
    for address in ("198.51.100.1", "198.51.100.2", "198.51.100.3"):
        fail(client, 2, **from_address(address))
    assert client.get("/v1/balance", headers=BAD_KEY, **from_address("198.51.100.1")).status_code == 429
    fail(client, 1, **from_address("198.51.100.4"))  # a fourth address: the oldest one is forgotten
    assert len(counts.failures) == 3
    assert client.get("/v1/balance", headers=BAD_KEY, **from_address("198.51.100.1")).status_code == 401
    assert client.get("/v1/balance", headers=BAD_KEY, **from_address("198.51.100.3")).status_code == 429
    assert ratelimit.MEMORY_MAX_ADDRESSES == 10_000  # what docs/deployment.md says


def test_with_redis_a_client_that_waits_its_retry_after_is_let_in_after_the_limit_was_lowered(make_app, redis_url):
    """Hosts (or a deploy) with a lower limit than the one that counted: Retry-After must still be when the
    count falls below this host's limit, not when the oldest failure leaves the window."""
    before = make_app(AUTH_FAILURE_LIMIT="4/3 seconds", RATELIMIT_STORAGE_URI=redis_url).test_client()
    after = make_app(AUTH_FAILURE_LIMIT="2/3 seconds", RATELIMIT_STORAGE_URI=redis_url).test_client()
    address = a_new_address()
    fail(before, 2, **address)
    time.sleep(1.2)
    fail(before, 2, **address)
    blocked = after.get("/v1/balance", headers=BAD_KEY, **address)
    assert blocked.status_code == 429
    time.sleep(int(blocked.headers["Retry-After"]) + 0.05)
    assert after.get("/v1/balance", headers=BAD_KEY, **address).status_code == 401


@pytest.fixture(scope="module")
def private_redis():
    """A redis-server of this module's own, with passwords, a unix socket and TLS (tests/redis_server.py)."""
    with running_redis(tls=True) as server:
        yield server


@pytest.mark.parametrize("kind", ["unix socket", "ACL user", "TLS"])
def test_with_redis_two_app_instances_share_the_count_over_every_kind_of_url(make_app, private_redis, kind):
    server = private_redis
    url = {
        "unix socket": f"redis+unix://:{PASSWORD}@{server.unix_socket}?db=2",
        "ACL user": f"redis://{USER}:{USER_PASSWORD}@127.0.0.1:{server.port}/3",
        "TLS": f"rediss://:{PASSWORD}@127.0.0.1:{server.tls_port}/0?ssl_ca_certs={server.certificate}",
    }[kind]
    first = make_app(AUTH_FAILURE_LIMIT="3/minute", RATELIMIT_STORAGE_URI=url).test_client()
    second = make_app(AUTH_FAILURE_LIMIT="3/minute", RATELIMIT_STORAGE_URI=url).test_client()
    address = a_new_address()
    fail(first, 2, **address)
    fail(second, 1, **address)
    assert first.get("/v1/balance", headers=BAD_KEY, **address).status_code == 429
    assert second.get("/v1/balance", headers=BAD_KEY, **address).status_code == 429


def test_a_redis_that_stops_answering_lets_requests_through_within_the_deadline_and_keeps_its_counts(
    make_app, create_token, auth, private_redis, caplog
):
    """A frozen Redis costs one request the deadline (50 ms), not a 500; once it answers, counting goes on."""
    app = make_app(AUTH_FAILURE_LIMIT="3/minute", RATELIMIT_STORAGE_URI=private_redis.url(db=6))
    clock = app.extensions[ratelimit._EXTENSION].clock = Clock()
    client, key, address = app.test_client(), create_token(remain_quota=1), a_new_address()
    fail(client, 2, **address)
    os.kill(private_redis.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        assert client.get("/v1/balance", headers=BAD_KEY, **address).status_code == 401  # not counted
        assert time.monotonic() - started < 0.5
    finally:
        os.kill(private_redis.pid, signal.SIGCONT)
    assert "rate-limit storage unavailable, not limiting" in caplog.text
    assert "TimeoutError" in caplog.text
    clock.now += ratelimit.BREAKER_SECONDS  # the breaker tries Redis again
    fail(client, 1, **address)  # the third failure in the window
    assert client.get("/v1/balance", headers=auth(key), **address).status_code == 429


def test_a_redis_that_never_answers_at_start_up_starts_the_service_degraded_within_two_seconds(
    make_app, create_token, auth, caplog
):
    with socket.socket() as silent:  # accepts connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        started = time.monotonic()
        client = make_app(AUTH_FAILURE_LIMIT="3/minute", RATELIMIT_STORAGE_URI=url).test_client()
        assert time.monotonic() - started < 3
        key = create_token(remain_quota=1)
        started = time.monotonic()
        assert client.get("/v1/balance", headers=auth(key)).status_code == 200
        assert time.monotonic() - started < 0.1  # the breaker is open: Redis is not asked
    assert "rate-limit storage unavailable, not limiting" in caplog.text


@pytest.mark.parametrize(
    ("raw", "rate"),
    [
        ("20/minute", Rate(20, 60)),
        ("20 per minute", Rate(20, 60)),
        ("5/10 seconds", Rate(5, 10)),
        ("100 per 2 hours", Rate(100, 7200)),
        ("1/day", Rate(1, 86400)),
        ("3 PER DAYS", Rate(3, 86400)),
        (" 10/Second ", Rate(10, 1)),
        ("7/month", Rate(7, 30 * 86400)),
        ("0", None),
        ("off", None),
        ("Off", None),
        ("", None),
    ],
)
def test_auth_failure_limit_is_read_as_failures_per_window_of_seconds(raw, rate):
    assert parse_rate(raw) == rate


@pytest.mark.parametrize(
    "raw",
    ["lots", "0/minute", "5/minute;100/day", "5/0 minutes", "20/min", "20/s", "1.5/minute", "-1/minute", "20/"]
    + ["/minute", "20/fortnight", "20", "1234567890/minute"],
)
def test_an_auth_failure_limit_that_is_not_one_rate_stops_the_start_up(raw):
    with pytest.raises(ConfigError, match=r"AUTH_FAILURE_LIMIT must be one rate such as '20/minute', or 'off'"):
        parse_rate(raw)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/15", {"host": "127.0.0.1", "port": 6379, "db": 15, "password": None}),
        ("redis://redis.internal", {"host": "redis.internal", "port": None, "db": None, "path": None}),
        ("redis://:p%40ss@10.0.0.5:7000/2", {"username": None, "password": "p@ss", "port": 7000, "db": 2}),
        ("redis://limiter:pw@[::1]/1?db=4", {"username": "limiter", "password": "pw", "host": "::1", "db": 4}),
        ("rediss://:pw@cache.example:6380/0", {"connection_class": SSLConnection, "ssl_ca_certs": None}),
        (
            "rediss://cache.example?ssl_ca_certs=/etc/ssl/certs/ca-certificates.crt&ssl_cert_reqs=none",
            {"ssl_ca_certs": "/etc/ssl/certs/ca-certificates.crt", "ssl_cert_reqs": "none"},
        ),
        (
            "redis+unix:///run/redis/redis.sock?db=3",
            {
                "path": "/run/redis/redis.sock",
                "db": 3,
                "password": None,
                "connection_class": UnixDomainSocketConnection,
            },
        ),
        ("redis+unix://:pw@/run/redis.sock", {"path": "/run/redis.sock", "password": "pw", "db": None}),
    ],
)
def test_redis_urls_are_read_by_redis_py_in_the_forms_the_service_has_always_taken(url, expected):
    """redis-py's defaults (port 6379, database 0) apply to what a URL leaves out."""
    options = redis_options(url)
    assert {name: options.get(name) for name in expected} == expected


@pytest.mark.parametrize(
    "url",
    [
        "redis://:secret-pw@127.0.0.1:port/0",
        "redis://:secret-pw@127.0.0.1/zero",
        "redis://secret-pw@127.0.0.1/0",  # a user name without a password: the password was meant
        "redis://:secret-pw@127.0.0.1/0?socket_timeout=5",
        "redis://:secret-pw@127.0.0.1/0?ssl_ca_certs=/etc/ca.pem",
        "rediss://:secret-pw@127.0.0.1/0?ssl_cert_reqs=sometimes",
        "redis+unix://:secret-pw@var/run/redis.sock",
        "redis+unix://:secret-pw@/run/redis.sock?db=x",
        "memcached://:secret-pw@127.0.0.1:11211",
        "redis+cluster://:secret-pw@127.0.0.1:7000",
        "redis+sentinel://:secret-pw@127.0.0.1:26379/mymaster",
    ],
)
def test_a_bad_redis_url_stops_the_start_up_without_repeating_the_password(url):
    with pytest.raises(ConfigError, match="RATELIMIT_STORAGE_URI") as error:
        Settings.from_env({"RATELIMIT_STORAGE_URI": url})
    assert "secret-pw" not in str(error.value)


def test_an_unreadable_ca_file_stops_the_start_up(make_app, tmp_path):
    with pytest.raises(ConfigError, match="ssl_ca_certs"):
        make_app(AUTH_FAILURE_LIMIT="3/minute", RATELIMIT_STORAGE_URI=f"rediss://127.0.0.1/0?ssl_ca_certs={tmp_path}/x")


def test_counting_in_memory_from_many_threads_at_once_never_fails():
    """A threaded server (the development server, gunicorn ``--threads``) records failures of many
    addresses at once; past 10,000 addresses the store sweeps stale ones out, and that sweep must not
    trip over another thread adding an address ("dictionary changed size during iteration", a 500)."""
    counts = LocalCounts(parse_rate("5/minute"))
    errors: list[str] = []

    def fail_from_many_addresses(n: int) -> None:
        try:
            for i in range(15_000):
                address = f"10.{n}.{i // 256 % 256}.{i % 256}"
                counts.record_failure(address)
                counts.retry_after(address)
        except Exception as e:  # noqa: BLE001 - the test reports whatever a thread raised
            errors.append(repr(e))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, so a race shows at once
    try:
        threads = [threading.Thread(target=fail_from_many_addresses, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    assert counts.retry_after("10.0.0.1") is None  # one failure each: nobody is blocked
