"""balance-service: how much credit is left on a one-api / new-api ``sk-`` key."""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping
from decimal import Decimal
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

import simplejson
from flask import Flask, Response, request
from flask.json.provider import JSONProvider
from werkzeug.middleware.proxy_fix import ProxyFix

from . import config as config_module
from . import cors, direct_reads, observability, ratelimit
from .errors import register_error_handlers
from .extensions import db
from .logging_setup import configure as configure_logging
from .usage import limit as usage_limit
from .version import __version__

__all__ = ["__version__", "create_app"]


def _flat_json(obj: Any) -> str | None:
    """``obj`` as compact JSON if it is a flat dict (str keys; str, bool, int, None, finite Decimal values), or None.

    Every API answer is such a dict. simplejson builds an encoder for each call
    with these options; this writes the same text several times faster: a
    ``Decimal`` as ``str()`` gives it (exact, as simplejson does with
    ``use_decimal``) and strings with the stdlib's C escaper (ASCII only, as
    simplejson's default). tests/test_json_answers.py checks both agree.
    """
    if type(obj) is not dict:
        return None
    parts = []
    for key, value in obj.items():
        kind = type(value)
        if type(key) is not str:
            return None
        if kind is str:
            text = encode_basestring_ascii(value)
        elif kind is bool:
            text = "true" if value else "false"
        elif kind is int or (kind is Decimal and value.is_finite()):
            text = str(value)
        elif value is None:
            text = "null"
        else:
            return None
        parts.append(f"{encode_basestring_ascii(key)}:{text}")
    return "{" + ",".join(parts) + "}"


class ExactJSONProvider(JSONProvider):
    """Writes ``Decimal`` amounts as exact JSON numbers (the stdlib would need floats)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if not kwargs:
            text = _flat_json(obj)
            if text is not None:
                return text
        kwargs.setdefault("use_decimal", True)
        kwargs.setdefault("separators", (",", ":"))
        return simplejson.dumps(obj, **kwargs)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        """Parse with exact decimals; any input it cannot take is a ``ValueError`` (a 400, never a 500).

        Deep nesting overflows the recursion limit, and an exponent like
        ``1e-99999999999999999999`` is beyond what ``Decimal`` can hold.
        """
        try:
            return simplejson.loads(s, use_decimal=True, **kwargs)
        except (RecursionError, ArithmeticError) as e:
            raise ValueError(f"unreadable JSON: {type(e).__name__}") from None


class _Flask(Flask):
    """Flask, remembering which functions are plain ``def`` functions.

    Flask asks ``inspect`` whether each hook and view is a coroutine function,
    on every request (eight times for a balance request); the answer for a
    given function never changes.
    """

    _MAX_REMEMBERED = 256

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plain_functions: set[Any] = set()

    def ensure_sync(self, func: Any) -> Any:
        try:
            if func in self._plain_functions:
                return func
        except TypeError:  # a method of an unhashable object: ask Flask each time
            return super().ensure_sync(func)
        wrapped = super().ensure_sync(func)
        if wrapped is func and len(self._plain_functions) < self._MAX_REMEMBERED:
            self._plain_functions.add(func)
        return wrapped

    def make_default_options_response(self) -> Response:
        """``OPTIONS`` without ``Origin`` (not a CORS preflight): 204 No Content with ``Allow``, typed JSON.

        Flask's own answer is an empty ``text/html`` 200. The question "which methods
        does this path take" is answered by ``Allow``; a 204 has no body by definition,
        so nothing in it can be other than JSON, and the content type says JSON for
        clients that check it. Not a 405: ``OPTIONS`` is allowed (it is in ``Allow``).
        A preflight (with ``Origin``) keeps Flask-CORS's answer, unchanged.
        """
        response = super().make_default_options_response()
        if "Origin" not in request.headers:
            response.status_code = 204
            response.mimetype = "application/json"
        return response


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Application factory; ``config`` (tests) overrides what the environment says."""
    app = _Flask(__name__, instance_relative_config=True)
    # Werkzeug would answer ``/v1//balance`` with a 308 redirect whose body is
    # HTML (Flask sends routing redirects past the error handlers); an API
    # path is exact, so such a path is a JSON 404 like any other unknown one.
    app.url_map.merge_slashes = False
    app.json_provider_class = ExactJSONProvider
    app.json = ExactJSONProvider(app)
    settings = config_module.from_env()
    settings.update(config or {})
    app.config.update(config_module.finalize(settings, app.instance_path))
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///"):
        os.makedirs(app.instance_path, exist_ok=True)

    configure_logging(app.config["LOG_LEVEL"])
    if app.config.get("PROXY_FIX_X_FOR"):
        # Trust that many proxies' X-Forwarded-For: the client address for logs and rate limits.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["PROXY_FIX_X_FOR"])
    observability.init_app(app)
    db.init_app(app)
    # The "logs" bind (LOG_DATABASE_URL) only holds gateway tables: create_all() must never touch it,
    # in this app or (Flask-SQLAlchemy keeps bind keys per extension) in any other.
    db.metadatas.pop("logs", None)
    direct_reads.init_app(app)
    usage_limit.init_app(app)
    register_error_handlers(app)
    limiting = ratelimit.init_app(app)

    # Request hooks, all in this one place, in the order they must run. Flask runs
    # the app's before_request hooks in the order registered (then the blueprints'
    # own: the api blueprint's ``authenticate`` comes after all of these) and the
    # after_request hooks in the reverse order; error handlers' responses go
    # through the after_request hooks too.
    #   before: 1. start_request (clock, request id)  2. refuse_blocked_client (429)
    #   after:  1. count_failed_auth (sees the 401)  2. CORS headers (cors.py)  3. finish_request
    # finish_request is registered first so that it runs last and its header,
    # metrics and access-log line describe the response exactly as it is sent.
    app.before_request(observability.start_request)
    app.after_request(observability.finish_request)
    cors.init_app(app)  # Flask-CORS's after_request hook, then the API's cached headers (see cors.py)
    if limiting:
        app.before_request(ratelimit.refuse_blocked_client)
        app.after_request(ratelimit.count_failed_auth)

    from .blueprints import api, docs, health, metrics

    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(docs.bp)
    app.register_blueprint(api)

    from .cli import register_commands

    register_commands(app)
    _dispose_engines_after_fork(app)
    return app


_engines: weakref.WeakSet = weakref.WeakSet()


def _reset_engines_in_child() -> None:
    for engine in list(_engines):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_reset_engines_in_child)


def _dispose_engines_after_fork(app: Flask) -> None:
    """A forked worker must not reuse the parent's pooled connections (gunicorn ``preload_app``)."""
    with app.app_context():
        _engines.update(db.engines.values())
