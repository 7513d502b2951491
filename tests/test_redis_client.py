"""The limiter's Redis, through redis-py: a deadline per call, a breaker, and start-up checks of the URL.

Real servers on loopback: a private redis-server (tests/redis_server.py) for
credentials, ACLs, databases, TLS and freezing; a fake server for replies no
real Redis sends (malformed, of the wrong type, trickled, MOVED).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid

import pytest
import redis

from balance_service import ratelimit
from balance_service.config import ConfigError
from tests.redis_server import NO_SCRIPTS_USER, PASSWORD, USER_PASSWORD, fake_redis, running_redis

pytestmark = pytest.mark.backend_independent

BAD_KEY = {"Authorization": "Bearer sk-" + "b" * 48}


@pytest.fixture(scope="module")
def server():
    with running_redis(tls=True) as server:
        yield server


class Clock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def an_address() -> dict:
    return {"environ_base": {"REMOTE_ADDR": f"2001:db8:{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}::1"}}


def limiter_of(app) -> ratelimit.SharedCounts:
    return app.extensions[ratelimit._EXTENSION]


@pytest.fixture
def limited_by(make_app):
    """An app limited to 3 failures a minute, counted in the Redis of ``url``, on a clock of the test's."""

    def factory(url: str) -> tuple:
        app = make_app(AUTH_FAILURE_LIMIT="3/minute", RATELIMIT_STORAGE_URI=url)
        clock = Clock()
        limiter_of(app).clock = clock
        return app, app.test_client(), clock

    return factory


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "balance_service.ratelimit"]


# Each ends in a valid reply ("blocked for 60 s") left behind in the same packet: a client that kept the
# connection after the malformed part would hand it to the next request as that request's answer.
MALFORMED = {
    "not a number": b":12x\r\n",
    "a length beyond any buffer": b"$99999999999999999999\r\n",
    "arrays nested past the recursion limit": b"*1\r\n" * 5000,
}


@pytest.mark.parametrize("reply", MALFORMED.values(), ids=MALFORMED.keys())
def test_after_a_malformed_reply_the_next_request_gets_its_own_answer(limited_by, create_token, auth, reply):
    blocked_for_a_minute = b":60000\r\n"
    answers = {0: [reply + blocked_for_a_minute]}
    with fake_redis(lambda command, n: answers.get(n, [b":0\r\n"])) as fake:
        app, client, clock = limited_by(fake.url)
        key = create_token(remain_quota=1)
        assert client.get("/v1/balance", headers=auth(key), **an_address()).status_code == 200  # let through
        clock.advance(ratelimit.BREAKER_SECONDS)  # the breaker lets the next call try again
        assert client.get("/v1/balance", headers=auth(key), **an_address()).status_code == 200
        assert len(fake.commands) == 2
        assert fake.connections == 3  # start-up, the malformed reply's, and a new one for the next call


def test_a_reply_of_the_wrong_type_lets_requests_through_instead_of_failing_them(
    limited_by, create_token, auth, caplog
):
    with fake_redis(lambda command, n: [b"+OK\r\n"]) as fake:
        app, client, clock = limited_by(fake.url)
        key = create_token(remain_quota=1)
        for _ in range(3):
            assert client.get("/v1/balance", headers=auth(key), **an_address()).status_code == 200
            assert client.get("/v1/balance", headers=BAD_KEY, **an_address()).status_code == 401
    assert len(fake.commands) == 1  # then the breaker stopped asking
    assert "the script answered bytes, not a number" in caplog.text


def test_a_reply_trickled_one_byte_at_a_time_is_given_up_at_the_deadline(limited_by, create_token, auth, caplog):
    trickle = [b"" if i % 2 else bytes([byte]) for i, byte in enumerate(b":0000000000\r\n" * 2)]  # ~0.8 s
    with fake_redis(lambda command, n: trickle) as fake:
        app, client, clock = limited_by(fake.url)
        key = create_token(remain_quota=1)
        started = time.monotonic()
        assert client.get("/v1/balance", headers=auth(key), **an_address()).status_code == 200
        assert time.monotonic() - started < 0.3  # the deadline (50 ms) and the request itself
    assert "TimeoutError" in caplog.text


def test_a_redis_cluster_node_answering_moved_turns_the_limiter_off_with_a_warning_that_says_so(
    limited_by, create_token, auth, caplog
):
    with fake_redis(lambda command, n: [b"-MOVED 3999 127.0.0.1:7001\r\n"]) as fake:
        app, client, clock = limited_by(fake.url)
        assert client.get("/v1/balance", headers=auth(create_token(remain_quota=1)), **an_address()).status_code == 200
        assert client.get("/readyz").get_json()["limiter"] == "degraded"
    [warning] = warnings(caplog)
    assert "MovedError" in warning and "Redis Cluster" in warning


def test_while_redis_is_down_a_burst_of_requests_logs_one_warning_and_recovery_logs_one_more(
    make_app, create_token, auth, server, caplog
):
    app = make_app(AUTH_FAILURE_LIMIT="3/minute", RATELIMIT_STORAGE_URI=server.url(db=7))
    limiter, clock, client = limiter_of(app), Clock(), app.test_client()
    limiter.clock = clock
    key = create_token(remain_quota=1)
    address = an_address()
    os.kill(server.pid, signal.SIGSTOP)
    try:
        for _ in range(50):
            assert client.get("/v1/balance", headers=auth(key), **an_address()).status_code == 200
            assert client.get("/v1/balance", headers=BAD_KEY, **address).status_code == 401  # not counted
        assert len(warnings(caplog)) == 1
        assert client.get("/readyz").get_json() == {"success": True, "status": "ready", "limiter": "degraded"}
        assert "balance_service_rate_limit_storage_outages_total 1.0" in client.get("/metrics").get_data(as_text=True)
    finally:
        os.kill(server.pid, signal.SIGCONT)
    clock.advance(ratelimit.BREAKER_SECONDS)
    fail_three_times = [client.get("/v1/balance", headers=BAD_KEY, **address).status_code for _ in range(4)]
    assert fail_three_times == [401, 401, 401, 429]
    assert len(warnings(caplog)) == 2 and "answers again" in warnings(caplog)[1]
    assert client.get("/readyz").get_json()["limiter"] == "ok"


def test_a_connection_redis_closed_while_idle_is_replaced_and_the_request_still_checked(make_app, server):
    """Redis's ``timeout`` (or a restart) closes idle connections: the next call must not be let through."""
    app = make_app(AUTH_FAILURE_LIMIT="3/minute", RATELIMIT_STORAGE_URI=server.url(db=8))
    client, address = app.test_client(), an_address()
    for _ in range(3):
        assert client.get("/v1/balance", headers=BAD_KEY, **address).status_code == 401
    admin = redis.Redis(unix_socket_path=server.unix_socket, password=PASSWORD)
    with admin:
        admin.client_kill_filter(_type="normal", skipme=True)
    assert client.get("/v1/balance", headers=BAD_KEY, **address).status_code == 429
    assert not limiter_of(app).degraded


def test_a_frozen_redis_under_load_adds_at_most_the_deadline_to_any_request(
    make_app, create_token, auth, server, caplog
):
    """SIGSTOP: Redis accepts connections (the kernel does) and never answers. Each request stays under 100 ms."""
    app = make_app(AUTH_FAILURE_LIMIT="3/minute", RATELIMIT_STORAGE_URI=server.url(db=9))
    key = create_token(remain_quota=1)
    durations: list[tuple[float, bool]] = []
    frozen, stop = threading.Event(), threading.Event()

    def load() -> None:
        client = app.test_client()
        while not stop.is_set():
            started, was_frozen = time.monotonic(), frozen.is_set()
            status = client.get("/v1/balance", headers=auth(key), **an_address()).status_code  # never trusted
            durations.append((time.monotonic() - started, was_frozen))
            assert status == 200

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.3)
        os.kill(server.pid, signal.SIGSTOP)
        frozen.set()
        time.sleep(0.7)
    finally:
        os.kill(server.pid, signal.SIGCONT)
        stop.set()
        for thread in threads:
            thread.join()
    assert sum(was_frozen for _, was_frozen in durations) >= 10
    assert max(duration for duration, _ in durations) < 0.1, sorted(durations)[-5:]
    assert "TimeoutError" in caplog.text


@pytest.mark.parametrize(
    ("url", "refusal"),
    [
        ("redis://:not-the-password@127.0.0.1:{port}/0", "invalid username-password pair"),
        ("redis://127.0.0.1:{port}/0", "Authentication required"),
        (f"redis://{NO_SCRIPTS_USER}:{USER_PASSWORD}@127.0.0.1:{{port}}/0", "no permissions to run the 'script|load'"),
        (f"redis://:{PASSWORD}@127.0.0.1:{{port}}/99", "DB index is out of range"),
        (f"rediss://:{PASSWORD}@127.0.0.1:{{tls_port}}/0", "CERTIFICATE_VERIFY_FAILED"),
    ],
    ids=["wrong password", "no password", "ACL user without +@scripting", "database out of range", "untrusted CA"],
)
def test_a_redis_url_that_redis_refuses_stops_the_start_up(make_app, server, url, refusal):
    url = url.format(port=server.port, tls_port=server.tls_port)
    with pytest.raises(ConfigError, match="RATELIMIT_STORAGE_URI") as error:
        make_app(AUTH_FAILURE_LIMIT="3/minute", RATELIMIT_STORAGE_URI=url)
    assert refusal in str(error.value)
    assert PASSWORD not in str(error.value) and "not-the-password" not in str(error.value)


def test_a_redis_that_is_down_at_start_up_starts_the_service_degraded(make_app, create_token, auth, caplog):
    app = make_app(AUTH_FAILURE_LIMIT="3/minute", RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0")
    client = app.test_client()
    assert client.get("/v1/balance", headers=auth(create_token(remain_quota=1))).status_code == 200
    assert client.get("/readyz").get_json()["limiter"] == "degraded"
    [warning] = warnings(caplog)
    assert "ConnectionError" in warning


def test_after_start_up_no_redis_connection_is_left_for_forked_workers_to_share(make_app, server):
    """gunicorn's master builds the app (preload_app) and forks: it must hand no socket down."""
    admin = redis.Redis(unix_socket_path=server.unix_socket, password=PASSWORD)
    with admin:
        before = len(admin.client_list())
        make_app(AUTH_FAILURE_LIMIT="3/minute", RATELIMIT_STORAGE_URI=server.url(db=10))
        assert len(admin.client_list()) == before


def test_a_forked_worker_counts_over_a_connection_of_its_own(make_app, server):
    app = make_app(AUTH_FAILURE_LIMIT="3/minute", RATELIMIT_STORAGE_URI=server.url(db=11))
    client, address = app.test_client(), an_address()
    assert client.get("/v1/balance", headers=BAD_KEY, **address).status_code == 401  # the parent connects
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: two failures and a check over its own connection; never return into pytest
        try:
            statuses = [client.get("/v1/balance", headers=BAD_KEY, **address).status_code for _ in range(3)]
            os.write(write, repr(statuses).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read()
    os.waitpid(pid, 0)
    assert child == "[401, 401, 429]"
    assert client.get("/v1/balance", headers=BAD_KEY, **address).status_code == 429  # the parent's still works


def test_the_deadline_bounds_a_whole_call_not_each_read(server):
    """redis-py's own socket_timeout is per read; the limiter's connections also end a call at its deadline."""
    from balance_service._internal.redis_deadline import DeadlineUnixConnection, deadline

    pool = redis.ConnectionPool(
        connection_class=DeadlineUnixConnection, path=server.unix_socket, password=PASSWORD, socket_timeout=5
    )
    with redis.Redis(connection_pool=pool, retry=None) as client:
        with deadline(0.2):
            assert client.ping()
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError), deadline(0.1):
            client.blpop(["never-pushed"], timeout=2)  # a reply that takes 2 s to come
        assert time.monotonic() - started < 0.5
        assert client.ping()  # outside a deadline: redis-py's own timeouts


@pytest.mark.parametrize("level", [logging.WARNING])
def test_start_up_logs_nothing_when_redis_answers(make_app, server, caplog, level):
    with caplog.at_level(level):
        make_app(AUTH_FAILURE_LIMIT="3/minute", RATELIMIT_STORAGE_URI=server.url(db=12))
    assert warnings(caplog) == []
