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

The counts live in ``RATELIMIT_STORAGE_URI``: in memory (:class:`LocalCounts`,
per worker) or in Redis (:class:`SharedCounts`, one count for all workers and
hosts; what production uses). The limiter is a brake, not a gate, and must not
take the service down with it: each Redis call has a total deadline
(``REDIS_DEADLINE``, see :mod:`._internal.redis_deadline`), and after a failure
a :class:`Breaker` lets requests through for ``BREAKER_SECONDS``. A Redis that
refuses the URL's credentials, database or the script (ACL) stops the
start-up; a Redis that is merely down starts the service degraded.

Both stores count at most ``AUTH_FAILURE_LIMIT`` failures per address: a
failure while blocked (one that got past the check of another worker, see
:class:`SharedCounts`) is not counted and does not lengthen the block.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import secrets
import ssl
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from functools import lru_cache

import redis
from flask import Flask, Response, current_app, jsonify, request
from redis.backoff import NoBackoff
from redis.connection import Connection
from redis.retry import Retry

from . import observability
from ._internal.redis_deadline import DEADLINE_CLASSES, deadline
from .config import ConfigError, Rate, Settings, redis_options
from .errors import error_body

MESSAGE = "Too many failed authentication attempts; retry later"
_KEY_PREFIX = "balance-service:auth-failures:"
_EXTENSION = "balance_auth_failure_limiter"
#: Addresses a worker remembers as recently found unblocked in Redis before the stale ones are swept out.
_REMEMBERED_ADDRESSES = 10_000
#: Addresses with recent failures that memory:// keeps per worker; past it the one whose last failure is
#: oldest is forgotten (about 1.4 KB each at the default limit of 20 failures, so 14 MB at most).
MEMORY_MAX_ADDRESSES = 10_000
#: Seconds a worker takes an address it found unblocked in Redis as still unblocked (see SharedCounts).
_TRUST_UNBLOCKED = 1.0
#: Seconds one Redis call may take in all (connecting, sending, reading every byte of the reply).
REDIS_DEADLINE = 0.05
#: ... and at start-up, where nothing waits on it but a new Redis connection may need a TLS handshake.
_START_UP_DEADLINE = 2.0
#: Seconds the limiter stops asking Redis after a failure, before one trial call.
BREAKER_SECONDS = 5.0

#: Checks an address, or counts a failure, in one round trip. KEYS[1]: the address's sorted set of failures,
#: scored in ms by Redis's own clock (hosts whose clocks differ still count one window); ARGV: the window (ms),
#: the limit, and a new failure's unique member ('' only checks). Returns the ms until the address is no longer
#: blocked, else 0. TIME comes before the writes, which Redis < 5 allows only after replicate_commands().
_SCRIPT = """
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

log = logging.getLogger(__name__)

#: A clock for windows, trust and the breaker: time.monotonic, or a test's own.
Clock = Callable[[], float]


class LocalCounts:
    """This process's own counts (``memory://``): each address's failure times inside the window, oldest first.

    Checking an address without recent failures (nearly every request) costs
    one dict lookup. A lock (uncontended under gunicorn's sync workers) keeps
    threads (the development server, ``--threads``) from evicting while another adds.
    """

    def __init__(self, rate: Rate, clock: Clock = time.monotonic, max_addresses: int = MEMORY_MAX_ADDRESSES) -> None:
        self.limit = rate.amount
        self.window = float(rate.seconds)
        self.clock = clock
        self.max_addresses = max_addresses
        #: address -> clock() of its failures (at most ``limit``), oldest first; the latest failed address last.
        self.failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _in_window(self, failures: deque[float], now: float) -> deque[float]:
        cutoff = now - self.window
        while failures and failures[0] <= cutoff:
            failures.popleft()
        return failures

    def retry_after(self, address: str) -> int | None:
        """Seconds until ``address`` may try again, or ``None`` if it is not blocked."""
        if address not in self.failures:
            return None
        with self._lock:
            failures = self.failures.get(address)
            if failures is None:
                return None
            now = self.clock()
            if not self._in_window(failures, now):
                del self.failures[address]  # all its failures have left the window
                return None
            if len(failures) < self.limit:
                return None
            return max(1, math.ceil(failures[0] + self.window - now))

    def record_failure(self, address: str) -> None:
        with self._lock:
            now = self.clock()
            failures = self.failures.get(address)
            if failures is None:
                while len(self.failures) >= self.max_addresses:
                    self.failures.popitem(last=False)
                failures = self.failures[address] = deque(maxlen=self.limit)
            else:
                self.failures.move_to_end(address)
            if len(self._in_window(failures, now)) < self.limit:
                failures.append(now)

    degraded = False  # nothing to fall back from


class Breaker:
    """After a failure of Redis, answer without it for ``seconds``, then let one call try again.

    Logs one WARNING when it opens and one when a call succeeds again, not one
    per request; ``on_open`` is called each time it opens (a metric).
    """

    def __init__(self, seconds: float, clock: Clock, on_open: Callable[[], object]) -> None:
        self.seconds = seconds
        self.clock = clock
        self.on_open = on_open
        self.open = False
        self._retry_at = 0.0

    def allows(self) -> bool:
        """Whether to ask Redis now: always while closed; once open, one trial call every ``seconds``."""
        if not self.open:
            return True
        now = self.clock()
        if now < self._retry_at:
            return False
        self._retry_at = now + self.seconds  # this call is the trial; the others keep answering without Redis
        return True

    def failed(self, cause: str) -> None:
        self._retry_at = self.clock() + self.seconds
        if not self.open:
            self.open = True
            log.warning(
                "rate-limit storage unavailable, not limiting failed authentications for %g s and until Redis "
                "answers again: %s",
                self.seconds,
                cause,
            )
            self.on_open()

    def succeeded(self) -> None:
        if self.open:
            self.open = False
            log.warning("rate-limit storage answers again: failed authentications are limited again")


def _describe(error: BaseException) -> str:
    """What went wrong, for the log: redis-py's messages name host and port, never the password."""
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, redis.exceptions.AskError):  # MOVED is an AskError too
        text += " (RATELIMIT_STORAGE_URI points at a Redis Cluster node; the limiter needs one plain Redis server)"
    return text


#: Errors at start-up that are the URL's fault (credentials, ACL, database), not Redis being down.
_CONFIG_ERRORS = (
    redis.exceptions.AuthenticationError,  # WRONGPASS, NOAUTH
    redis.exceptions.AuthenticationWrongNumberOfArgsError,  # a user name for a Redis older than 6
    redis.exceptions.NoPermissionError,  # NOPERM: an ACL user without +@scripting, or without the key pattern
)


def _untrusted_certificate(error: BaseException | None) -> bool:
    """Whether a TLS certificate check failed somewhere in the chain of ``error`` (redis-py wraps it)."""
    while error is not None:
        if isinstance(error, ssl.SSLCertVerificationError):
            return True
        error = error.__cause__ or error.__context__
    return False


class SharedCounts:
    """The counts in Redis, shared by every worker and host.

    Asking Redis for every request would cost more than the key lookup
    itself, so a worker that found an address unblocked trusts that for
    ``_TRUST_UNBLOCKED`` seconds, until it sees a failure from that address
    itself. An address blocked elsewhere in that second can thus get one more
    failed guess through on each worker (its 401 ends the trust at once); its
    requests with a valid key are answered, which tells it nothing it did not know.
    """

    def __init__(
        self,
        rate: Rate,
        redis_url: str,
        *,
        clock: Clock = time.monotonic,
        on_open: Callable[[], object] = lambda: None,
        call_deadline: float = REDIS_DEADLINE,
        breaker_seconds: float = BREAKER_SECONDS,
    ) -> None:
        self.limit = rate.amount
        self.window_ms = rate.seconds * 1000
        self.clock = clock
        self.call_deadline = call_deadline
        options = redis_options(redis_url)
        options["connection_class"] = DEADLINE_CLASSES[options.get("connection_class", Connection)]
        pool = redis.ConnectionPool(
            **options,
            # Upper bounds only: each call is cut to its deadline (_internal/redis_deadline.py).
            socket_timeout=_START_UP_DEADLINE,
            socket_connect_timeout=_START_UP_DEADLINE,
            protocol=2,  # no HELLO handshake (nor a fallback for Redis < 6), no push messages
            driver_info=None,  # no CLIENT SETINFO round trips on connecting
            # One more try, on a new connection, when the pooled one was closed (Redis's idle timeout, a
            # restart); within the same deadline. Never after a timeout: that would only wait longer.
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)),
        )
        self.redis = redis.Redis(connection_pool=pool)
        self.script = self.redis.register_script(_SCRIPT)
        self.breaker = Breaker(breaker_seconds, lambda: self.clock(), on_open)  # the same clock, if a test swaps it
        #: address -> clock() until which it is taken as unblocked.
        self.unblocked_until: dict[str, float] = {}
        self._sweep_at = _REMEMBERED_ADDRESSES

    @property
    def degraded(self) -> bool:
        return self.breaker.open

    def check_at_start_up(self) -> None:
        """Log in, select the database and load the script: what the URL gets wrong stops the start-up.

        Redis not answering is not the URL's fault: the service starts with the
        breaker open. The connection is closed afterwards, so that gunicorn's
        master (``preload_app``) hands no socket down to its workers.
        """
        try:
            with deadline(_START_UP_DEADLINE):
                self.redis.script_load(_SCRIPT)
        except redis.exceptions.RedisError as e:
            refused = isinstance(e, _CONFIG_ERRORS) or _untrusted_certificate(e)
            if refused or "DB index is out of range" in str(e) or "invalid DB index" in str(e):
                raise ConfigError(f"RATELIMIT_STORAGE_URI: Redis refused the limiter: {_describe(e)}") from None
            self.breaker.failed(_describe(e))
        finally:
            self.redis.connection_pool.disconnect()

    def _run(self, address: str, member: str) -> int | None:
        """The script's answer for ``address``; None if the breaker is open or Redis fails (which opens it)."""
        if not self.breaker.allows():
            return None
        try:
            with deadline(self.call_deadline):
                reply = self.script(keys=[_KEY_PREFIX + address], args=[self.window_ms, self.limit, member])
            if type(reply) is not int:
                raise redis.exceptions.InvalidResponse(f"the script answered {type(reply).__name__}, not a number")
        # Not only RedisError: a malformed reply can raise ValueError, OverflowError, RecursionError or
        # MemoryError in the parser. redis-py has dropped the connection by then; this request goes on.
        except Exception as e:  # noqa: BLE001
            self.breaker.failed(_describe(e))
            return None
        self.breaker.succeeded()
        return reply

    def retry_after(self, address: str) -> int | None:
        """Seconds until ``address`` may try again, or ``None`` if it is not blocked (or Redis does not answer)."""
        until = self.unblocked_until.get(address)
        if until is not None and self.clock() < until:
            return None
        wait_ms = self._run(address, "")
        if wait_ms is None:
            return None
        if wait_ms > 0:
            return math.ceil(wait_ms / 1000)
        now = self.clock()
        if len(self.unblocked_until) >= self._sweep_at:
            # A snapshot first: under threads another request may add an address meanwhile.
            self.unblocked_until = {a: t for a, t in list(self.unblocked_until.items()) if t > now}
            self._sweep_at = max(_REMEMBERED_ADDRESSES, 2 * len(self.unblocked_until))
        self.unblocked_until[address] = now + _TRUST_UNBLOCKED
        return None

    def record_failure(self, address: str) -> None:
        self.unblocked_until.pop(address, None)
        self._run(address, secrets.token_hex(8))  # unique: two failures in one millisecond are two failures


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


def refuse_blocked_client() -> tuple[Response, int, dict[str, str]] | None:
    """``before_request`` of the ``api`` blueprint: a blocked address gets 429 before its key is even looked up.

    Preflights carry no credentials and are never refused: the page must be
    able to read the 429 that follows.
    """
    store = current_app.extensions.get(_EXTENSION)
    req = request._get_current_object()  # one context lookup, not one per attribute
    if store is None or req.method == "OPTIONS":
        return None
    address = client_key(req.remote_addr)
    if address is None:
        return None
    retry_after = store.retry_after(address)
    if retry_after is None:
        return None
    return jsonify(error_body(MESSAGE)), 429, {"Retry-After": str(retry_after)}


def count_failed_auth(response: Response) -> Response:
    """``after_request`` of the ``api`` blueprint: count its 401s."""
    if response.status_code != 401:
        return response
    store = current_app.extensions.get(_EXTENSION)
    address = client_key(request.remote_addr)
    if store is not None and address is not None:
        store.record_failure(address)
    return response


def init_app(app: Flask, settings: Settings) -> None:
    """Set up the limiter (``AUTH_FAILURE_LIMIT``, ``RATELIMIT_STORAGE_URI``) unless the limit is off."""
    rate = settings.auth_failure_limit
    if rate is None:
        return
    if settings.limiter_in_memory:
        app.extensions[_EXTENSION] = LocalCounts(rate)
    else:
        outages = observability.metrics(app).limiter_outages.inc
        shared = SharedCounts(rate, settings.ratelimit_storage_uri, on_open=outages)
        shared.check_at_start_up()
        app.extensions[_EXTENSION] = shared


def status() -> str:
    """The current app's limiter for ``/readyz``: ``off``, ``ok``, or ``degraded`` (not asking Redis for now)."""
    store = current_app.extensions.get(_EXTENSION)
    if store is None:
        return "off"
    return "degraded" if store.degraded else "ok"
