"""Resolving a webhook host: bounded in time, and a refusal never says where a name points.

A name server that never answers is a real UDP DNS stub on loopback that reads
queries and sends nothing back. The process resolver cannot be pointed at it
without editing /etc/resolv.conf (glibc has no environment setting for the name
server), so the test replaces ``socket.getaddrinfo`` the way the suite's
offline guard does (conftest.py): for names under ``.stalled.test`` it sends a
real DNS query to the stub and waits for the answer with the C library's
default patience (5 s per try, 2 tries). The code under test is unchanged: it
calls ``socket.getaddrinfo`` and must give up after ``DEFAULT_DNS_TIMEOUT`` (2 s).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from sqlalchemy import func, select

from balance_service.alerts.delivery import deliver
from balance_service.alerts.models import BalanceAlert
from balance_service.alerts.targets import DEFAULT_DNS_TIMEOUT, TargetError, parse_url, resolve
from balance_service.extensions import db as _db

pytestmark = pytest.mark.backend_independent

URL = "/v1/user/balance/alerts"
STALLED = "hooks.stalled.test"
LIBC_TIMEOUT, LIBC_ATTEMPTS = 5.0, 2


@dataclass
class SilentNameServer:
    """A UDP DNS server on loopback that records the names asked for and never answers."""

    address: tuple[str, int] = ("127.0.0.1", 0)
    asked: list[str] = field(default_factory=list)


def _question_name(packet: bytes) -> str:
    labels, offset = [], 12
    while offset < len(packet) and packet[offset]:
        length = packet[offset]
        labels.append(packet[offset + 1 : offset + 1 + length].decode("ascii", "replace"))
        offset += 1 + length
    return ".".join(labels)


@contextmanager
def silent_name_server() -> Iterator[SilentNameServer]:
    server = SilentNameServer()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    server.address = sock.getsockname()
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                packet, _ = sock.recvfrom(512)
            except TimeoutError:
                continue
            server.asked.append(_question_name(packet))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stopping.set()
        thread.join()
        sock.close()


def dns_query(name: str) -> bytes:
    """A standard recursive query for the A record of ``name``."""
    header = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    question = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
    return header + question + struct.pack("!HH", 1, 1)


@pytest.fixture
def stalled_resolver(monkeypatch) -> Iterator[SilentNameServer]:
    """``socket.getaddrinfo`` asks the silent stub for ``*.stalled.test``, as libc would ask its name server."""
    offline = socket.getaddrinfo  # the suite's guard

    def getaddrinfo(host, port, *args, **kwargs):
        if not str(host).endswith(".stalled.test"):
            return offline(host, port, *args, **kwargs)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(LIBC_TIMEOUT)
            for _ in range(LIBC_ATTEMPTS):
                sock.sendto(dns_query(str(host)), server.address)
                try:
                    sock.recvfrom(512)
                except TimeoutError:
                    continue
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    with silent_name_server() as server:
        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        yield server


def test_a_name_server_that_never_answers_gives_a_400_within_two_seconds(
    make_app, create_token, auth, stalled_resolver
):
    app = make_app()
    key = create_token()
    started = time.monotonic()
    response = app.test_client().post(
        URL, json={"threshold": 1, "webhook_url": f"https://{STALLED}/hook"}, headers=auth(key)
    )
    elapsed = time.monotonic() - started

    assert response.status_code == 400
    assert response.get_json() == {
        "success": False,
        "message": f"the webhook host '{STALLED}' did not resolve within {DEFAULT_DNS_TIMEOUT:g} s",
    }
    assert elapsed < DEFAULT_DNS_TIMEOUT + 1, f"the request took {elapsed:.1f} s"
    assert stalled_resolver.asked == [STALLED], "the lookup really went to the name server"
    with app.app_context():
        assert _db.session.execute(select(func.count()).select_from(BalanceAlert)).scalar_one() == 0


def test_two_stalled_creations_leave_the_health_probe_answering(make_app, create_token, auth, stalled_resolver):
    """The attack of the report: two such POSTs used to hold both workers for 10 s each."""
    app = make_app()  # names are given DEFAULT_DNS_TIMEOUT: 2 s
    key = create_token()
    client = app.test_client()
    started = time.monotonic()
    for _ in range(2):
        response = client.post(URL, json={"threshold": 1, "webhook_url": f"http://{STALLED}/"}, headers=auth(key))
        assert response.status_code == 400
    assert time.monotonic() - started < 2 * DEFAULT_DNS_TIMEOUT + 1
    assert client.get("/healthz").status_code == 200


def test_a_delivery_to_a_stalled_host_gives_up_after_the_dns_timeout(stalled_resolver):
    started = time.monotonic()
    result = deliver(
        f"http://{STALLED}/hook",
        b"{}",
        "secret",
        event="balance.below_threshold",
        timestamp=0,
        allow_private=False,
        timeout=5,
        attempts=1,
        backoff=0,
        dns_timeout=0.3,
    )
    assert not result.ok
    assert result.error == f"the webhook host '{STALLED}' did not resolve within 0.3 s"
    assert time.monotonic() - started < 1.3


@pytest.mark.parametrize("allow_private", [False, True])
def test_a_refused_target_does_not_reveal_the_address_it_resolves_to(make_app, create_token, auth, allow_private):
    """Any key holder could otherwise map internal names: ``'vm' resolves to 127.0.0.1``."""
    app = make_app(ALERT_ALLOW_PRIVATE_TARGETS=allow_private)
    key = create_token()
    # localhost resolves to 127.0.0.1 (allowed with the setting on); 169.254.169.254 never is.
    host = "169.254.169.254" if allow_private else "localhost"
    response = app.test_client().post(
        URL, json={"threshold": 1, "webhook_url": f"http://{host}:8080/hook"}, headers=auth(key)
    )
    assert response.status_code == 400
    message = response.get_json()["message"]
    assert message.startswith("webhook_url is not allowed: it must point to a public address")
    assert "127.0.0.1" not in message and "169.254" not in message and "resolves" not in message
    assert "localhost" not in message


def test_the_refusal_names_neither_the_host_nor_its_address_for_a_resolved_name():
    with pytest.raises(TargetError) as refused:
        resolve(parse_url("http://localhost:9/"), allow_private=False)
    assert "localhost" not in refused.value.message and "127." not in refused.value.message
    assert not refused.value.retryable
