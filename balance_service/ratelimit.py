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
uses). If Redis is unreachable or slow (``_REDIS_TIMEOUT``) the check lets
requests through and logs a warning: the limiter is a brake, not a gate, and
must not take the service down with it.

In Redis each address has a sorted set, ``balance-service:auth-failures:<address>``,
of its failures scored with their time in milliseconds by Redis's own clock
(so that hosts whose clocks differ still count one window); one Lua script
(``_SCRIPT``) checks an address, or counts a failure, in one round trip. The
``limits`` library this replaces kept lists under ``LIMITS:balance-service-auth-failures/...``;
those are left alone (they expire within a window), so counts start afresh once
when this version is deployed. Both stores count at most ``AUTH_FAILURE_LIMIT``
failures per address: a failure while blocked (one that got past the check of
another worker, see :class:`SharedCounts`) is not counted and does not lengthen the block.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import secrets
import threading
import time
from collections import deque
from functools import lru_cache
from urllib.parse import urlparse

from flask import Flask, Request, Response, current_app, jsonify, request

from .config import Rate, parse_rate, redis_target
from .errors import error_body
from .redis_client import RedisClient, RedisError, Script

MESSAGE = "Too many failed authentication attempts; retry later"
_KEY_PREFIX = "balance-service:auth-failures:"
_EXTENSION = "balance_auth_failure_limiter"
#: Blueprints whose 401s count and whose requests are blocked.
_GUARDED_BLUEPRINT = "api"
#: Addresses remembered (recent failure, or recently found unblocked) before the stale ones are swept out.
_REMEMBERED_ADDRESSES = 10_000
#: Seconds a worker takes an address it found unblocked in Redis as still unblocked (see SharedCounts).
_TRUST_UNBLOCKED = 1.0
#: Seconds to wait for Redis (connecting, and each read) before giving up and letting the request through.
_REDIS_TIMEOUT = 1.0

#: KEYS[1]: one address's sorted set; ARGV: the window (ms), the limit, and a new failure's unique member
#: ('' only checks). Returns the milliseconds until the address is no longer blocked (its count falls below
#: the limit as failures leave the window), else 0. TIME comes before the writes, which Redis < 5 allows only
#: after replicate_commands().
_SCRIPT = Script(
    """
redis.replicate_commands()
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local window, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if ARGV[3] ~= '' and count < limit then
    redis.call('ZADD', KEYS[1], now, ARGV[3])
    redis.call('PEXPIRE', KEYS[1], window)
    count = count + 1
end
if count < limit then
    return 0
end
-- Blocked until the count falls below the limit: when the (count - limit + 1)th oldest failure leaves the
-- window. That is the oldest unless a host with a higher limit counted more (a lowered limit, a deploy).
return tonumber(redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')[2]) + window - now
"""
)

log = logging.getLogger(__name__)


class LocalCounts:
    """This process's own counts (``memory://``): each address's failure times inside the window, oldest first.

    Nearly every request comes from an address without recent failures: it
    is not in ``failures``, and checking it costs one dict lookup. A lock
    (uncontended under gunicorn's sync workers) keeps threads (the development
    server, ``--threads``) from sweeping the dict while another adds to it.
    """

    def __init__(self, rate: Rate) -> None:
        self.limit = rate.amount
        self.window = float(rate.seconds)
        #: address -> time.monotonic() of its failures (at most ``limit``), oldest first; stale ones swept out.
        self.failures: dict[str, deque[float]] = {}
        self._sweep_at = _REMEMBERED_ADDRESSES
        self._lock = threading.Lock()

    def _in_window(self, failures: deque[float], now: float) -> deque[float]:
        cutoff = now - self.window
        while failures and failures[0] <= cutoff:
            failures.popleft()
        return failures

    def retry_after(self, address: str) -> int | None:
        """Seconds until ``address`` may try again, or ``None`` if it is not blocked."""
        failures = self.failures.get(address)
        if failures is None:
            return None
        with self._lock:
            now = time.monotonic()
            if len(self._in_window(failures, now)) < self.limit:
                return None
            return max(1, math.ceil(failures[0] + self.window - now))

    def record_failure(self, address: str) -> None:
        with self._lock:
            self._record(address)

    def _record(self, address: str) -> None:
        now = time.monotonic()
        failures = self.failures.get(address)
        if failures is None:
            if len(self.failures) >= self._sweep_at:
                cutoff = now - self.window
                self.failures = {a: f for a, f in self.failures.items() if f and f[-1] > cutoff}
                # Sweep again only once as many have come: not on every new address while all are recent.
                self._sweep_at = max(_REMEMBERED_ADDRESSES, 2 * len(self.failures))
            failures = self.failures[address] = deque(maxlen=self.limit)
        if len(self._in_window(failures, now)) < self.limit:
            failures.append(now)


class SharedCounts:
    """The counts in Redis, shared by every worker and host.

    Asking Redis for every request would cost more than the key lookup
    itself, so a worker that found an address unblocked trusts that for
    ``_TRUST_UNBLOCKED`` seconds, until it sees a failure from that address
    itself. An address blocked elsewhere in that second can thus get one more
    failed guess through on each worker (its 401 ends the trust at once); its
    requests with a valid key are answered, which tells it nothing it did not know.
    """

    def __init__(self, rate: Rate, redis_url: str) -> None:
        self.limit = rate.amount
        self.window_ms = rate.seconds * 1000
        self.redis = RedisClient(redis_target(redis_url), _REDIS_TIMEOUT)
        #: address -> time.monotonic() until which it is taken as unblocked.
        self.unblocked_until: dict[str, float] = {}
        self._sweep_at = _REMEMBERED_ADDRESSES

    def retry_after(self, address: str) -> int | None:
        """Seconds until ``address`` may try again, or ``None`` if it is not blocked (or Redis does not answer)."""
        until = self.unblocked_until.get(address)
        if until is not None and time.monotonic() < until:
            return None
        try:
            wait_ms = self.redis.run(_SCRIPT, [_KEY_PREFIX + address], [self.window_ms, self.limit, ""])
        except RedisError as e:
            log.warning("rate-limit storage unavailable, not limiting: %s: %s", self.redis.target, e)
            return None
        if wait_ms:
            return math.ceil(wait_ms / 1000)
        now = time.monotonic()
        if len(self.unblocked_until) >= self._sweep_at:
            # A snapshot first: under threads another request may add an address meanwhile.
            self.unblocked_until = {a: t for a, t in list(self.unblocked_until.items()) if t > now}
            self._sweep_at = max(_REMEMBERED_ADDRESSES, 2 * len(self.unblocked_until))
        self.unblocked_until[address] = now + _TRUST_UNBLOCKED
        return None

    def record_failure(self, address: str) -> None:
        self.unblocked_until.pop(address, None)
        member = secrets.token_hex(8)  # unique: two failures in one millisecond are two failures
        try:
            self.redis.run(_SCRIPT, [_KEY_PREFIX + address], [self.window_ms, self.limit, member])
        except RedisError as e:
            log.warning("rate-limit storage unavailable, failure not counted: %s: %s", self.redis.target, e)


def _guarded(req: Request) -> bool:
    # Preflights carry no credentials and are never refused: the page must be
    # able to read the 429 that follows.
    blueprint = req.blueprint
    return blueprint is not None and blueprint.partition(".")[0] == _GUARDED_BLUEPRINT and req.method != "OPTIONS"


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
    req = request._get_current_object()  # one context lookup, not one per attribute
    if not _guarded(req):
        return None
    address = client_key(req.remote_addr)
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
    if response.status_code != 401:
        return response
    req = request._get_current_object()
    if not _guarded(req):
        return response
    address = client_key(req.remote_addr)
    if address is not None:
        current_app.extensions[_EXTENSION].record_failure(address)
    return response


def init_app(app: Flask) -> bool:
    """Set up the limiter unless the limit is off; True when ``create_app`` should install the two hooks."""
    rate = parse_rate(app.config.get("AUTH_FAILURE_LIMIT") or "off")
    if rate is None:
        return False
    storage = app.config.get("RATELIMIT_STORAGE_URI") or "memory://"
    # By the scheme, as config.ratelimit_storage_uri accepted it: "Memory://" is memory:// too.
    in_memory = urlparse(storage).scheme == "memory"
    app.extensions[_EXTENSION] = LocalCounts(rate) if in_memory else SharedCounts(rate, storage)
    return True
