"""A total deadline for one redis-py call: the one thing the failed-auth limiter adds to redis-py itself.

Internal to :mod:`balance_service.ratelimit`. redis-py bounds each socket
operation (``socket_timeout``), not a call: a server that trickles its reply
one byte at a time keeps every ``recv`` within the timeout and can hold a
request for as long as it likes. Here each read, write and connect waits no
longer than the time left until the deadline of the call in progress
(:func:`deadline`); a call that runs out of time fails as redis-py's
``TimeoutError``, and redis-py discards the connection, as it does on any
error in the middle of a reply.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from redis.connection import Connection, SSLConnection, UnixDomainSocketConnection

#: time.monotonic() by which the call in progress in this thread (or task) must be done; None: no deadline.
_deadline: ContextVar[float | None] = ContextVar("balance_service_redis_deadline", default=None)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Every redis-py call made in this block, retries included, ends within ``seconds`` in all."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def _time_left(limit: float | None) -> float | None:
    """Seconds a socket operation may wait: ``limit`` (redis-py's timeout), cut to the deadline if one is set."""
    end = _deadline.get()
    if end is None:
        return limit
    left = end - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline of the Redis call passed")  # socket.timeout: redis-py's TimeoutError
    return left if limit is None else min(left, limit)


class _DeadlineSocket:
    """A connected socket whose reads and writes wait no longer than the time left to the deadline."""

    __slots__ = ("_sock", "_timeout")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._timeout = sock.gettimeout()

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout
        self._sock.settimeout(timeout)

    def gettimeout(self) -> float | None:
        return self._timeout

    def recv(self, *args: Any) -> bytes:
        self._sock.settimeout(_time_left(self._timeout))
        return self._sock.recv(*args)

    def recv_into(self, *args: Any) -> int:
        self._sock.settimeout(_time_left(self._timeout))
        return self._sock.recv_into(*args)

    def sendall(self, *args: Any) -> None:
        self._sock.settimeout(_time_left(self._timeout))
        self._sock.sendall(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _DeadlineMixin:
    """Connects within the time left, then hands redis-py the socket wrapped in :class:`_DeadlineSocket`."""

    def _connect(self) -> Any:
        configured = self.socket_connect_timeout
        self.socket_connect_timeout = _time_left(configured)
        try:
            return _DeadlineSocket(super()._connect())
        finally:
            self.socket_connect_timeout = configured


#: redis-py's connection class (as redis.connection.parse_url chose it: TCP, TLS, unix socket) -> the same with
#: a deadline (for TLS, the handshake too waits no longer than the time left).
DEADLINE_CLASSES: dict[type, type] = {
    base: type(f"Deadline{base.__name__}", (_DeadlineMixin, base), {})
    for base in (Connection, SSLConnection, UnixDomainSocketConnection)
}
DeadlineUnixConnection = DEADLINE_CLASSES[UnixDomainSocketConnection]
