"""balance-service: how much credit is left on a one-api / new-api ``sk-`` key."""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping
from typing import Any

import simplejson
from flask import Flask
from flask.json.provider import JSONProvider
from werkzeug.middleware.proxy_fix import ProxyFix

from . import config as config_module
from . import direct_reads, observability, ratelimit
from .errors import register_error_handlers
from .extensions import cors, db
from .logging_setup import configure as configure_logging
from .version import __version__

__all__ = ["__version__", "create_app"]


class ExactJSONProvider(JSONProvider):
    """Writes ``Decimal`` amounts as exact JSON numbers (the stdlib would need floats)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
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


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Application factory; ``config`` (tests) overrides what the environment says."""
    app = Flask(__name__, instance_relative_config=True)
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
    register_error_handlers(app)
    limiting = ratelimit.init_app(app)

    # Request hooks, all in this one place, in the order they must run. Flask runs
    # the app's before_request hooks in the order registered (then the blueprints'
    # own: the api blueprint's ``authenticate`` comes after all of these) and the
    # after_request hooks in the reverse order; error handlers' responses go
    # through the after_request hooks too.
    #   before: 1. start_request (clock, request id)  2. refuse_blocked_client (429)
    #   after:  1. count_failed_auth (sees the 401)  2. CORS headers  3. finish_request
    # finish_request is registered first so that it runs last and its header,
    # metrics and access-log line describe the response exactly as it is sent.
    app.before_request(observability.start_request)
    app.after_request(observability.finish_request)
    cors.init_app(  # registers the CORS after_request hook (and wraps the exception handlers)
        app,
        resources={r"/v1/*": {}, r"/dashboard/*": {}, r"/openapi.json": {}},
        origins=app.config["CORS_ORIGINS"],
        allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
        expose_headers=["X-Request-ID", "Retry-After"],
        methods=["GET", "HEAD", "POST", "DELETE", "OPTIONS"],
        max_age=app.config["CORS_MAX_AGE"],
        supports_credentials=False,
    )
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
