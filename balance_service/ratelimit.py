"""Slow down key guessing: too many failed authentications from one address block that address.

Only ``401`` answers of the authenticated blueprints count as failures. Once an
address has ``AUTH_FAILURE_LIMIT`` failures inside the moving window, *every*
request it makes to those blueprints gets ``429`` until the oldest failure
leaves the window, valid keys included: a client guessing keys must not learn
from a ``200`` that one guess was right. Health probes and ``/metrics`` are
never blocked.

The counts live in ``RATELIMIT_STORAGE_URI``: in memory (each gunicorn worker
counts on its own) or in Redis (one count for all workers and hosts). If Redis
is unreachable the check lets requests through: the limiter is a brake, not a
gate, and must not take the service down with it.
"""

from __future__ import annotations

import logging
import math
import time

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
#: Seconds to wait for Redis before giving up (and letting the request through).
_REDIS_TIMEOUT = 1.0

log = logging.getLogger(__name__)


class FailedAuthLimiter:
    """A moving-window count of failed authentications per client address."""

    def __init__(self, limit: str, storage_uri: str) -> None:
        self.item = parse(limit)
        options: dict = {"wrap_exceptions": True}
        if storage_uri.startswith("redis"):
            options.update(socket_timeout=_REDIS_TIMEOUT, socket_connect_timeout=_REDIS_TIMEOUT)
        self.limiter = MovingWindowRateLimiter(storage_from_string(storage_uri, **options))

    def retry_after(self, address: str) -> int | None:
        """Seconds until ``address`` may try again, or ``None`` if it is not blocked."""
        try:
            if self.limiter.test(self.item, _NAMESPACE, address):
                return None
            reset, _ = self.limiter.get_window_stats(self.item, _NAMESPACE, address)
        except StorageError as e:
            log.warning("rate-limit storage unavailable, not limiting: %s", e.storage_error)
            return None
        return max(1, math.ceil(reset - time.time()))

    def record_failure(self, address: str) -> None:
        try:
            self.limiter.hit(self.item, _NAMESPACE, address)
        except StorageError as e:
            log.warning("rate-limit storage unavailable, failure not counted: %s", e.storage_error)


def _guarded() -> bool:
    # Preflights carry no credentials and are never refused: the page must be
    # able to read the 429 that follows.
    return _GUARDED_BLUEPRINT in request.blueprints and request.method != "OPTIONS"


def _client_address() -> str:
    return request.remote_addr or "unknown"


def refuse_blocked_client() -> Response | None:
    """``before_request``: a blocked address gets 429 before its key is even looked up."""
    if not _guarded():
        return None
    retry_after = current_app.extensions[_EXTENSION].retry_after(_client_address())
    if retry_after is None:
        return None
    response = jsonify(error_body(MESSAGE))
    response.status_code = 429
    response.headers["Retry-After"] = str(retry_after)
    return response


def count_failed_auth(response: Response) -> Response:
    """``after_request``: count the 401s of the guarded blueprints."""
    if response.status_code == 401 and _guarded():
        current_app.extensions[_EXTENSION].record_failure(_client_address())
    return response


def init_app(app: Flask) -> bool:
    """Set up the limiter unless the limit is off; True when ``create_app`` should install the two hooks."""
    limit = app.config.get("AUTH_FAILURE_LIMIT")
    if not limit:
        return False
    app.extensions[_EXTENSION] = FailedAuthLimiter(limit, app.config.get("RATELIMIT_STORAGE_URI") or "memory://")
    return True
