"""Sign one notification and POST it, with retries, to an address checked right before sending.

The signature covers the time and the delivery's id as well as the body
(``t=<unix>,d=<delivery id>,v1=<hex HMAC-SHA256 of "t.d.body">``, the scheme
Stripe and Slack use), so a captured notification cannot be replayed with a
fresh timestamp, and a receiver that remembers the ids it has seen drops a replay.

Uses the standard library's ``http.client`` (what ``urllib`` is built on)
because the connection must go to the exact address that was checked, while
the Host header and the TLS certificate check still use the URL's host name.
Redirects are not followed: a 3xx could point anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import logging
import math
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

from .targets import DEFAULT_DNS_TIMEOUT, Target, TargetError, parse_url, resolve

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Balance-Signature"
TIMESTAMP_HEADER = "X-Balance-Timestamp"
EVENT_HEADER = "X-Balance-Event"
DELIVERY_HEADER = "X-Balance-Delivery"
_MAX_RESPONSE_BYTES = 64 * 1024
_MAX_ERROR_LENGTH = 300


def sign(secret: str, timestamp: int, delivery_id: str, body: bytes) -> str:
    """The signature header's value: ``t=…,d=…,v1=`` the hex HMAC-SHA256 of ``t.d.`` and the exact body bytes."""
    signed = f"{timestamp}.{delivery_id}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},d={delivery_id},v1={digest}"


@dataclass(frozen=True)
class DeliveryResult:
    ok: bool
    attempts: int
    error: str | None = None


class Retry(Exception):
    """One attempt failed in a way that another attempt may fix (network error, 5xx, 408, 429)."""


def _open_socket(addresses: list[str], port: int, timeout: float) -> socket.socket:
    error: OSError | None = None
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout)
        except OSError as e:
            error = e
    assert error is not None  # resolve() never returns an empty list
    raise error


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the checked addresses only, never to a fresh lookup of the host name."""

    def __init__(self, host: str, port: int, addresses: list[str], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._addresses = addresses

    def connect(self) -> None:
        self.sock = _open_socket(self._addresses, self.port, self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """As above, with TLS verified against the URL's host name (SNI and certificate)."""

    def __init__(self, host: str, port: int, addresses: list[str], timeout: float) -> None:
        self._tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self._tls)
        self._addresses = addresses

    def connect(self) -> None:
        sock = _open_socket(self._addresses, self.port, self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


def _cut(connection: http.client.HTTPConnection) -> None:
    """Deadline reached: shut the socket down, which ends any read or write blocked on it at once."""
    sock = connection.sock
    if sock is not None:
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _attempt(
    target: Target, addresses: list[str], body: bytes, headers: dict[str, str], timeout: float, remaining: float
) -> None:
    """One POST. Each socket operation waits at most ``timeout``; the whole attempt at most ``remaining``.

    A receiver that sends its answer a byte at a time would otherwise reset the
    socket timeout with every byte: a timer cuts the connection when the time
    left for this alert is up.
    """
    connection_class = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    connection = connection_class(target.host, target.port, addresses, min(timeout, remaining))
    watchdog = threading.Timer(min(remaining, threading.TIMEOUT_MAX), _cut, args=(connection,))
    watchdog.daemon = True
    watchdog.start()
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
        response.read(_MAX_RESPONSE_BYTES)
    except (OSError, http.client.HTTPException) as e:
        raise Retry(f"{type(e).__name__}: {e}"[:_MAX_ERROR_LENGTH]) from None
    finally:
        watchdog.cancel()
        connection.close()
    if 200 <= response.status < 300:
        return
    message = f"the webhook answered HTTP {response.status}"
    if response.status >= 500 or response.status in (408, 429):
        raise Retry(message)
    raise TargetError(message)


def deliver(
    url: str,
    body: bytes,
    secret: str,
    *,
    event: str,
    timestamp: int,
    allow_private: bool,
    timeout: float,
    attempts: int,
    backoff: float,
    dns_timeout: float = DEFAULT_DNS_TIMEOUT,
    deadline: float | None = None,
) -> DeliveryResult:
    """POST ``body`` to ``url`` up to ``attempts`` times; never raises for a failed delivery.

    The host is resolved and checked again before every attempt. A refused
    address or a 4xx answer ends the delivery at once; network errors, 5xx,
    408 and 429 are retried after ``backoff``, 2×``backoff``, … seconds. Every
    attempt sends the same body, signature and delivery id, so a receiver can
    drop duplicates. ``timestamp`` (Unix seconds) is signed with the body.

    ``deadline`` (seconds, all attempts, lookups and pauses together) bounds
    the whole delivery: no attempt or pause starts past it, and a running
    attempt is cut off when it is reached.
    """
    delivery_id = uuid.uuid4().hex
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "balance-service-webhook",
        EVENT_HEADER: event,
        # For information only: the signature header carries both, signed.
        DELIVERY_HEADER: delivery_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, delivery_id, body),
    }

    def attempt(left: Callable[[], float]) -> None:
        target = parse_url(url)
        _attempt(target, resolve(target, allow_private, min(dns_timeout, left())), body, headers, timeout, left())

    return retrying(attempt, attempts=attempts, backoff=backoff, deadline=deadline, what="webhook")


def retrying(
    attempt: Callable[[Callable[[], float]], None],
    *,
    attempts: int,
    backoff: float,
    deadline: float | None,
    what: str,
) -> DeliveryResult:
    """Run ``attempt(left)`` up to ``attempts`` times, for every channel; never raises for a failed delivery.

    ``left()`` is the time left before ``deadline`` (seconds from now, all
    attempts and pauses together). An attempt raises ``Retry`` for what another
    attempt may fix (tried again after ``backoff``, 2×``backoff``, … seconds)
    and ``TargetError`` when it is refused (retried only if ``retryable``); no
    attempt or pause starts past the deadline.
    """
    error = "not attempted"
    ends = time.monotonic() + (math.inf if deadline is None else deadline)

    def left() -> float:
        return max(ends - time.monotonic(), 0.001)

    def given_up(attempts_made: int) -> DeliveryResult:
        return DeliveryResult(False, attempts_made, f"{error}; gave up at the {deadline:g} s delivery deadline")

    for number in range(1, attempts + 1):
        if number > 1:
            pause = backoff * 2 ** (number - 2)
            if time.monotonic() + pause >= ends:
                return given_up(number - 1)
            time.sleep(pause)
        try:
            attempt(left)
        except TargetError as e:
            if not e.retryable:
                return DeliveryResult(False, number, e.message)
            error = e.message
        except Retry as e:
            error = str(e)
        else:
            return DeliveryResult(True, number)
        log.info("%s attempt %d of %d failed: %s", what, number, attempts, error)
        if time.monotonic() >= ends:
            return given_up(number)
    return DeliveryResult(False, attempts, error)
