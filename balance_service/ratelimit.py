"""Slow down key guessing: too many failed authentications from one address block that address.

Only ``401`` answers of the authenticated blueprints count as failures. Once an
address has ``AUTH_FAILURE_LIMIT`` failures inside the moving window, *every*
request it makes to those blueprints gets ``429`` until the oldest failure
leaves the window, valid keys included: a client guessing keys must not learn
from a ``200`` that one guess was right. Health probes and ``/metrics`` are
never blocked.

Clients are counted by address, IPv6 ones by their /64 network: one IPv6
host usually holds a whole /64 and could otherwise take a fresh address (and a
fresh budget) per attempt. A request without an address (gunicorn bound to a
unix socket, no trusted proxy header) is neither counted nor blocked: all such
clients would share one count and lock each other out.

The counts live in ``RATELIMIT_STORAGE_URI``: in memory (each gunicorn worker
counts on its own, and a worker recycled after ``max_requests`` forgets its
counts) or in Redis (one count for all workers and hosts; what production
uses). If Redis is unreachable the check lets requests through: the limiter is
a brake, not a gate, and must not take the service down with it.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from functools import lru_cache

from flask import Flask, Response, current_app, jsonify, request
from limits import parse
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from .errors import error_body

MESSAGE = "Too many failed authentication attempts; retry later"
_NAMESPACE = "balance-service-auth-failures"
_EXTENSION = "balance_auth_failure_limiter"
#: Blueprints whose 401s count and whose requests are blocked.
_GUARDED_BLUEPRINT = "api"
#: Addresses remembered (recent failure, or recently found unblocked) before the stale ones are swept out.
_REMEMBERED_ADDRESSES = 10_000
#: Seconds a worker takes an address it found unblocked in Redis as still unblocked (see FailedAuthLimiter).
_TRUST_UNBLOCKED = 1.0
#: Seconds to wait for Redis before giving up (and letting the request through).
_REDIS_TIMEOUT = 1.0

log = logging.getLogger(__name__)


class FailedAuthLimiter:
    """A moving-window count of failed authentications per client address.

    Nearly every request comes from an address without failures, and asking
    the storage for each one would cost more than the key lookup itself:

    - in memory the counts are this process's own, so the limiter remembers
      when each address last failed here: an address with no failure inside
      the window cannot be blocked and is not looked up (exact);
    - in Redis the counts are shared by every worker and host, so a worker
      that found an address unblocked trusts that for ``_TRUST_UNBLOCKED``
      seconds, until it sees a failure from that address itself. An address
      blocked elsewhere in that second can thus get one more failed guess
      through on each worker (its 401 ends the trust at once); its requests
      with a valid key are answered, which tells it nothing it did not know.
    """

    def __init__(self, limit: str, storage_uri: str) -> None:
        self.item = parse(limit)
        options: dict = {"wrap_exceptions": True}
        shared = storage_uri.startswith("redis")
        if shared:
            options.update(socket_timeout=_REDIS_TIMEOUT, socket_connect_timeout=_REDIS_TIMEOUT)
        self.limiter = MovingWindowRateLimiter(storage_from_string(storage_uri, **options))
        #: address -> time.monotonic() of its latest failure here; None when the counts are shared.
        self.last_failure: dict[str, float] | None = None if shared else {}
        #: address -> time.monotonic() until which it is taken as unblocked; None when the counts are local.
        self.unblocked_until: dict[str, float] | None = {} if shared else None
        # A second more than the window, so a clock step between this and the storage's clock cannot unblock early.
        self._window = self.item.get_expiry() + 1

    def retry_after(self, address: str) -> int | None:
        """Seconds until ``address`` may try again, or ``None`` if it is not blocked."""
        if self.last_failure is not None:
            failed = self.last_failure.get(address)
            if failed is None or time.monotonic() - failed > self._window:
                return None
        elif self.unblocked_until is not None:
            until = self.unblocked_until.get(address)
            if until is not None and time.monotonic() < until:
                return None
        try:
            if self.limiter.test(self.item, _NAMESPACE, address):
                if self.unblocked_until is not None:
                    now = time.monotonic()
                    if len(self.unblocked_until) >= _REMEMBERED_ADDRESSES:
                        self.unblocked_until = {a: t for a, t in list(self.unblocked_until.items()) if t > now}
                    self.unblocked_until[address] = now + _TRUST_UNBLOCKED
                return None
            reset, _ = self.limiter.get_window_stats(self.item, _NAMESPACE, address)
        except StorageError as e:
            log.warning("rate-limit storage unavailable, not limiting: %s", e.storage_error)
            return None
        return max(1, math.ceil(reset - time.time()))

    def record_failure(self, address: str) -> None:
        if self.unblocked_until is not None:
            self.unblocked_until.pop(address, None)
        if self.last_failure is not None:
            now = time.monotonic()
            if len(self.last_failure) >= _REMEMBERED_ADDRESSES:
                self.last_failure = {a: t for a, t in list(self.last_failure.items()) if now - t <= self._window}
            self.last_failure[address] = now
        try:
            self.limiter.hit(self.item, _NAMESPACE, address)
        except StorageError as e:
            log.warning("rate-limit storage unavailable, failure not counted: %s", e.storage_error)


def _guarded() -> bool:
    # Preflights carry no credentials and are never refused: the page must be
    # able to read the 429 that follows.
    blueprint = request.blueprint
    return blueprint is not None and blueprint.partition(".")[0] == _GUARDED_BLUEPRINT and request.method != "OPTIONS"


#: A client address that is not an IP (a misconfigured proxy header) is counted as text, this long at most.
_MAX_ADDRESS_LENGTH = 64


@lru_cache(maxsize=4096)  # parsing an address costs more than the rest of the check; clients repeat
def client_key(address: str | None) -> str | None:
    """What a client is counted by: its IPv4 address or its IPv6 /64 network; None without an address."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:_MAX_ADDRESS_LENGTH]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


def refuse_blocked_client() -> Response | None:
    """``before_request``: a blocked address gets 429 before its key is even looked up."""
    if not _guarded():
        return None
    address = client_key(request.remote_addr)
    if address is None:
        return None
    retry_after = current_app.extensions[_EXTENSION].retry_after(address)
    if retry_after is None:
        return None
    response = jsonify(error_body(MESSAGE))
    response.status_code = 429
    response.headers["Retry-After"] = str(retry_after)
    return response


def count_failed_auth(response: Response) -> Response:
    """``after_request``: count the 401s of the guarded blueprints."""
    if response.status_code != 401 or not _guarded():
        return response
    address = client_key(request.remote_addr)
    if address is not None:
        current_app.extensions[_EXTENSION].record_failure(address)
    return response


def init_app(app: Flask) -> bool:
    """Set up the limiter unless the limit is off; True when ``create_app`` should install the two hooks."""
    limit = app.config.get("AUTH_FAILURE_LIMIT")
    if not limit:
        return False
    app.extensions[_EXTENSION] = FailedAuthLimiter(limit, app.config.get("RATELIMIT_STORAGE_URI") or "memory://")
    return True
