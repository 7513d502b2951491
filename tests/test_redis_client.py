"""The limiter's own Redis client talks to a real, private redis-server: credentials, sockets, TLS, failures."""

from __future__ import annotations

import os
import socket
import time

import pytest

from balance_service.config import redis_target
from balance_service.redis_client import RedisClient, RedisError, ReplyError, Script
from tests.redis_server import PASSWORD, USER, USER_PASSWORD, running_redis

pytestmark = pytest.mark.backend_independent


@pytest.fixture(scope="module")
def server():
    with running_redis(tls=True) as server:
        yield server


@pytest.fixture
def connect():
    """Clients for URLs, closed after the test."""
    clients = []

    def factory(url: str, timeout: float = 1) -> RedisClient:
        clients.append(RedisClient(redis_target(url), timeout))
        return clients[-1]

    yield factory
    for client in clients:
        client.close()


def info(client: RedisClient) -> dict[str, str]:
    """The server's view of this connection (``CLIENT INFO``): ``db``, ``user``, ``id``..."""
    return dict(field.split("=", 1) for field in client.call("CLIENT", "INFO").decode().split())


def test_the_password_and_database_of_the_url_are_used(server, connect):
    client = connect(server.url(db=3))
    assert (info(client)["user"], info(client)["db"]) == ("default", "3")


def test_an_acl_user_logs_in_with_its_own_name_and_password(server, connect):
    client = connect(f"redis://{USER}:{USER_PASSWORD}@127.0.0.1:{server.port}/1")
    assert client.call("ACL", "WHOAMI") == USER.encode()
    assert info(client)["db"] == "1"


def test_a_wrong_password_is_an_error_that_does_not_repeat_it(server, connect):
    client = connect(server.url(password="not-the-password"))
    with pytest.raises(RedisError, match="WRONGPASS") as error:
        client.call("PING")
    assert "not-the-password" not in str(error.value)


def test_without_a_password_a_protected_server_refuses_commands(server, connect):
    with pytest.raises(ReplyError, match="NOAUTH"):
        connect(f"redis://127.0.0.1:{server.port}/0").call("PING")


def test_a_unix_socket_url_with_a_password_and_a_database(server, connect):
    client = connect(f"redis+unix://:{PASSWORD}@{server.unix_socket}?db=5")
    assert info(client)["db"] == "5"
    assert info(client)["addr"].startswith(server.unix_socket)


def test_rediss_checks_the_server_certificate(server, connect):
    url = f"rediss://:{PASSWORD}@127.0.0.1:{server.tls_port}/0"
    with pytest.raises(RedisError, match="CERTIFICATE_VERIFY_FAILED"):
        connect(url).call("PING")  # self-signed: not trusted by the system's CAs
    assert connect(f"{url}?ssl_ca_certs={server.certificate}").call("PING") == b"PONG"
    assert connect(f"{url}?ssl_cert_reqs=none").call("PING") == b"PONG"


def test_replies_of_every_kind_are_read_and_values_are_binary_safe(server, connect):
    client = connect(server.url(db=4))
    value = b"\x00\r\n$3\r\n*-1\r\n\xff"
    assert client.call("SET", "resp-test", value) == b"OK"
    assert client.call("GET", "resp-test") == value
    assert client.call("GET", "resp-test-missing") is None
    assert client.call("RPUSH", "resp-test-list", "a", "", 7) == 3
    assert client.call("LRANGE", "resp-test-list", 0, -1) == [b"a", b"", b"7"]
    assert client.call("DEL", "resp-test", "resp-test-list") == 2


def test_an_error_reply_leaves_the_connection_open(server, connect):
    client = connect(server.url())
    before = info(client)["id"]
    with pytest.raises(ReplyError, match="unknown command"):
        client.call("NO-SUCH-COMMAND")
    assert info(client)["id"] == before


def test_after_a_lost_connection_the_next_call_connects_again(server, connect):
    client, admin = connect(server.url()), connect(server.url())
    lost = info(client)["id"]
    admin.call("CLIENT", "KILL", "ID", lost)
    with pytest.raises(RedisError):
        client.call("PING")
    assert info(client)["id"] != lost


def test_a_server_that_never_answers_fails_the_call_within_the_timeout(connect):
    with socket.socket() as silent:  # the kernel completes connections; nothing ever reads or writes
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        client = connect(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", timeout=0.5)
        started = time.monotonic()
        with pytest.raises(RedisError, match="timed out"):
            client.call("PING")
        assert 0.4 < time.monotonic() - started < 1.5


def test_a_server_that_is_not_there_fails_the_call_at_once(connect):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        client = connect(f"redis://127.0.0.1:{closed.getsockname()[1]}/0")
        started = time.monotonic()
        with pytest.raises(RedisError, match="refused"):
            client.call("PING")
        assert time.monotonic() - started < 0.5


def test_a_script_redis_does_not_know_is_sent_once_then_called_by_its_sha(server, connect):
    client = connect(server.url())
    script = Script(f"return {{KEYS[1], ARGV[1], {time.time_ns()}}}")  # new to this server
    assert client.call("SCRIPT", "EXISTS", script.sha) == [0]
    assert client.run(script, ["k"], [42])[:2] == [b"k", b"42"]
    assert client.call("SCRIPT", "EXISTS", script.sha) == [1]
    assert client.run(script, ["k"], [43])[:2] == [b"k", b"43"]


def test_a_forked_child_opens_a_connection_of_its_own(server, connect):
    """gunicorn forks workers from a master that may have connected: replies must not go to the wrong process."""
    client = connect(server.url())
    parent = info(client)["id"]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its connection's id, never return into pytest
        try:
            os.write(write, info(client)["id"].encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read()
    os.waitpid(pid, 0)
    assert child not in ("", parent)
    assert info(client)["id"] == parent  # the parent's connection still works
