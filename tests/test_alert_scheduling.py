"""check-alerts against webhooks that never answer: bounded per alert, concurrent, backed off, still once per crossing.

The slow receivers are real TCP servers on loopback that accept a connection,
read the request and then never answer (or answer one byte at a time). Each
test bounds its waits with small timeouts and deadlines.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

from balance_service.alerts.delivery import deliver


@dataclass
class SilentReceiver:
    """Accepts connections and holds them open without answering (or drips an answer out)."""

    url: str = ""
    connections: int = 0
    accepted_at: list[float] = field(default_factory=list)


@contextmanager
def silent_receiver(drip: float | None = None) -> Iterator[SilentReceiver]:
    """A loopback HTTP "server" that never completes an answer.

    With ``drip``, it sends ``HTTP/1.1 200 OK`` one byte every ``drip`` seconds
    and never finishes the headers: every read gets a byte before any socket
    timeout, so only a total deadline ends the request.
    """
    state = SilentReceiver()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    state.url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    stopping = threading.Event()
    held: list[socket.socket] = []

    def hold(connection: socket.socket) -> None:
        connection.settimeout(0.05)
        status = b"HTTP/1.1 200 OK\r\n"
        sent = 0
        while not stopping.is_set():
            with suppress(TimeoutError):
                if connection.recv(65536) == b"":
                    return
            if drip is not None and stopping.wait(drip) is False:
                with suppress(OSError):
                    connection.sendall(status[sent % len(status) : sent % len(status) + 1])
                    sent += 1

    def serve() -> None:
        while not stopping.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            state.connections += 1
            state.accepted_at.append(time.monotonic())
            held.append(connection)
            threading.Thread(target=hold, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        stopping.set()
        thread.join()
        listener.close()
        for connection in held:
            connection.close()


def send(url: str, **overrides):
    options = {
        "event": "balance.below_threshold",
        "timestamp": 0,
        "allow_private": True,
        "timeout": 5,
        "attempts": 3,
        "backoff": 0.01,
        "dns_timeout": 1,
    }
    options.update(overrides)
    return deliver(url, b"{}", "secret", **options)


def test_a_never_answering_webhook_is_given_up_at_the_delivery_deadline():
    with silent_receiver() as receiver:
        started = time.monotonic()
        result = send(receiver.url, deadline=1)
        elapsed = time.monotonic() - started
    assert not result.ok
    assert result.error.endswith("gave up at the 1 s delivery deadline"), result.error
    assert elapsed < 1.5, elapsed
    assert receiver.connections == 1  # no second attempt starts past the deadline


def test_a_receiver_answering_a_byte_at_a_time_is_cut_off_at_the_deadline():
    """Each byte resets the socket timeout; only the deadline's timer ends the attempt."""
    with silent_receiver(drip=0.1) as receiver:
        started = time.monotonic()
        result = send(receiver.url, timeout=1, attempts=1, deadline=1.5)
        elapsed = time.monotonic() - started
    assert not result.ok
    assert elapsed < 2, elapsed


def test_without_a_deadline_each_attempt_waits_its_timeout():
    with silent_receiver() as receiver:
        started = time.monotonic()
        result = send(receiver.url, timeout=0.3, attempts=2)
        elapsed = time.monotonic() - started
    assert not result.ok and result.attempts == 2
    assert "timed out" in result.error
    assert 0.6 <= elapsed < 1.5, elapsed
    assert receiver.connections == 2
