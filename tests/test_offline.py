"""The test session resolves no host name through DNS: only IP literals and loopback names answer."""

from __future__ import annotations

import socket

import pytest


@pytest.mark.parametrize("name", ["host.invalid", "hooks.example", "receiver.test.", b"bytes.invalid"])
def test_names_outside_etc_hosts_fail_without_a_lookup(name):
    with pytest.raises(socket.gaierror, match="tests make no DNS lookups") as caught:
        socket.getaddrinfo(name, 443, type=socket.SOCK_STREAM)
    assert caught.value.errno == socket.EAI_NONAME


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("::1", "::1"),
        ("localhost", "127.0.0.1"),
        ("LOCALHOST.", "127.0.0.1"),
    ],
)
def test_ip_literals_and_localhost_still_resolve(host, address):
    addresses = {info[4][0] for info in socket.getaddrinfo(host, 80, type=socket.SOCK_STREAM)}
    assert address in addresses


def test_a_loopback_server_is_reachable_by_name():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("localhost", port), timeout=5) as connection:
            assert connection.getpeername()[:2] == ("127.0.0.1", port)
