"""Request ids, one JSON access-log line per request, and the Prometheus metrics ``/metrics`` serves.

Metrics are labelled by route *template* (``/v1/balance``), never by the raw
path: a client choosing paths must not be able to create new time series.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from flask import Flask, Response, current_app, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram

from ._internal.access_line import write_access_line
from .logging_setup import redact

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
#: Methods that get their own label value; anything else a client invents is "other".
_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"})
_EXTENSION = "balance_metrics"
_MAX_LOGGED_PATH = 512

access_log = logging.getLogger("balance_service.access")
log = logging.getLogger(__name__)


class Metrics:
    """The service's own metrics, in a registry per app so that apps (and tests) do not share counts."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "balance_service_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "balance_service_http_request_duration_seconds",
            "Time from the start of request handling to the response, by route template.",
            ["route"],
            registry=self.registry,
        )
        self.database_errors = Counter(
            "balance_service_database_errors",
            "Database failures seen while answering a request or a readiness probe.",
            registry=self.registry,
        )
        self.limiter_outages = Counter(
            "balance_service_rate_limit_storage_outages",
            "Times the failed-auth limiter stopped asking Redis (failed, or no answer within the deadline) "
            "and let requests through unchecked for a few seconds.",
            registry=self.registry,
        )
        # (method, route, status) -> the counter's and the histogram's child for those labels.
        # prometheus_client finds a child by its labels under a lock on every call;
        # the label values are few (methods, route templates, statuses), so keep them.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, duration: float) -> None:
        """Count one answered request and its duration."""
        children = self._children.get((method, route, status))
        if children is None:
            children = (
                self.requests.labels(method=method, route=route, status=str(status)),
                self.latency.labels(route=route),
            )
            self._children[(method, route, status)] = children
        children[0].inc()
        children[1].observe(duration)


def metrics(app: Flask) -> Metrics:
    """The app's own metrics (for parts that count something outside a request)."""
    return app.extensions[_EXTENSION]


def count_database_error() -> None:
    """Count one database failure for the current app (no-op outside an app with metrics)."""
    metrics = current_app.extensions.get(_EXTENSION)
    if metrics is not None:
        metrics.database_errors.inc()


def _new_request_id(incoming: str) -> str:
    """The caller's ``X-Request-ID`` if well formed, else a fresh one.

    The canonical uuid4 form, with hyphens: 32 bare hex digits would look like
    a key to the log redactor and be masked.
    """
    return incoming if _REQUEST_ID_RE.fullmatch(incoming) else str(uuid.uuid4())


def start_request() -> None:
    """``before_request``: the clock starts and the request id is fixed."""
    # The proxies (g, request) are looked up once each: these hooks run on every request.
    state = g._get_current_object()
    state.request_started = time.perf_counter()
    req = request._get_current_object()
    state.request_id = _new_request_id(req.headers.get(REQUEST_ID_HEADER, ""))
    environ = req.environ
    if _FORWARDED_FOR in environ and _PROXY_FIXED not in environ:
        warn_unused_forwarded_for()


#: A proxy's header in the WSGI environ, and the key ProxyFix (PROXY_FIX_X_FOR > 0) adds when it applied it.
_FORWARDED_FOR = "HTTP_X_FORWARDED_FOR"
_PROXY_FIXED = "werkzeug.proxy_fix.orig"
_FORWARDED_WARNED = "balance_service.forwarded_for_warned"


def warn_unused_forwarded_for() -> None:
    """Once per app and process: a request came through a proxy but ``PROXY_FIX_X_FOR`` is 0 (the warning says
    what that breaks). After the warning it costs one dictionary lookup."""
    extensions = current_app.extensions
    if extensions.get(_FORWARDED_WARNED):
        return
    extensions[_FORWARDED_WARNED] = True
    log.warning(
        "A request came with X-Forwarded-For but PROXY_FIX_X_FOR is 0: every client behind the proxy shares "
        "its address, so one client's failed keys count against all of them (AUTH_FAILURE_LIMIT) and the "
        "access log shows the proxy. Set PROXY_FIX_X_FOR to the number of proxies in front (1 behind "
        "deploy/nginx.conf)."
    )


def finish_request(response: Response) -> Response:
    """``after_request``, the last to run: header, metrics, one log line, for every response
    (error handlers' and other hooks' included)."""
    state = g._get_current_object()
    duration = time.perf_counter() - getattr(state, "request_started", time.perf_counter())
    req = request._get_current_object()
    rid = getattr(state, "request_id", None)
    if rid is None:  # start_request did not run
        rid = state.request_id = _new_request_id(req.headers.get(REQUEST_ID_HEADER, ""))
    response.headers[REQUEST_ID_HEADER] = rid
    rule = req.url_rule
    route = rule.rule if rule is not None else "unmatched"
    method = req.method
    status = response.status_code
    current_app.extensions[_EXTENSION].observe(method if method in _METHODS else "other", route, status, duration)
    if access_log.isEnabledFor(logging.INFO):
        # Deliberately no headers at all: Authorization carries the key. A key
        # pasted into the path is masked here, before the path is cut: cut first,
        # a key's first characters before the cut would be too short to look
        # like a key to the RedactKeys filter of the log handlers.
        path = redact(req.path)[:_MAX_LOGGED_PATH]
        fields = {
            "method": method[:16],
            "route": route,
            "path": path,
            "status": status,
            "duration_ms": round(duration * 1000, 3),
            "request_id": rid,
            "remote_addr": req.remote_addr,
        }
        message = f"{fields['method']} {path} {status}"
        if not write_access_line(access_log, message, rid, fields):
            # What access_log.info() does, without its search of the stack for the caller's file
            # and line: for this line they are always this function, and the JSON line leaves them out.
            record = access_log.makeRecord(
                access_log.name,
                logging.INFO,
                __file__,
                0,
                "%s",
                (message,),
                None,
                extra={"fields": fields, "request_id": rid},  # the RequestId filter need not look it up
            )
            access_log.handle(record)
    return response


def init_app(app: Flask) -> None:
    """Give the app its own metrics; ``create_app`` installs ``start_request`` and ``finish_request``."""
    app.extensions[_EXTENSION] = Metrics()
