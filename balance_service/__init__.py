"""balance-service: how much credit is left on a one-api / new-api ``sk-`` key."""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping
from typing import Any

import simplejson
from flask import Flask, Response, request
from flask.json.provider import JSONProvider
from werkzeug.middleware.proxy_fix import ProxyFix

from . import cors, observability, ratelimit
from ._internal import db_deadline, direct_reads
from .config import ENV_SETTINGS, Settings, flask_config
from .config import EXTENSION as SETTINGS_EXTENSION
from .errors import register_error_handlers
from .extensions import db
from .logging_setup import configure as configure_logging
from .usage import limit as usage_limit
from .version import __version__

__all__ = ["__version__", "after_fork", "create_app"]


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


class _Flask(Flask):
    """Flask, answering ``OPTIONS`` without ``Origin`` (not a CORS preflight) with 204 and ``Allow``, typed JSON.

    Flask's own answer is an empty ``text/html`` 200; every answer is JSON, so
    the content type says so. Not a 405: ``OPTIONS`` is allowed (it is in
    ``Allow``). A preflight keeps Flask-CORS's answer.
    """

    json_provider_class = ExactJSONProvider

    def make_default_options_response(self) -> Response:
        response = super().make_default_options_response()
        if "Origin" not in request.headers:
            response.status_code = 204
            response.mimetype = "application/json"
        return response


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Application factory; ``config`` (tests) overrides the environment.

    An entry named like a setting's variable (``BALANCE_UNIT``) is that setting
    (``Settings.from_env``); any other entry (``TESTING``) goes to Flask's config.
    """
    app = _Flask(__name__, instance_relative_config=True)
    # Werkzeug would answer ``/v1//balance`` with a 308 redirect whose body is
    # HTML (Flask sends routing redirects past the error handlers); an API
    # path is exact, so such a path is a JSON 404 like any other unknown one.
    app.url_map.merge_slashes = False
    given = dict(config or {})
    settings = Settings.from_env(**{name: given.pop(name) for name in ENV_SETTINGS if name in given})
    app.extensions[SETTINGS_EXTENSION] = settings
    app.config.update(flask_config(settings, app.instance_path))
    app.config.update(given)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///"):
        os.makedirs(app.instance_path, exist_ok=True)

    configure_logging(settings.log_level)
    if settings.proxy_fix_x_for:
        # Trust that many proxies' X-Forwarded-For: the client address for logs and rate limits.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.proxy_fix_x_for)
    observability.init_app(app)
    db.init_app(app)
    # The "logs" bind (LOG_DATABASE_URL) only holds gateway tables: create_all() must never touch it,
    # in this app or (Flask-SQLAlchemy keeps bind keys per extension) in any other.
    db.metadatas.pop("logs", None)
    direct_reads.init_app(app)
    usage_limit.init_app(app, settings.log_database_url)
    register_error_handlers(app)
    ratelimit.init_app(app, settings)

    # The app-wide request hooks (the api blueprint's own are in blueprints/__init__.py). Flask runs
    # after_request hooks in reverse order of registration, error handlers' responses included:
    # finish_request runs last, so its header, metrics and access line describe the response as sent.
    app.before_request(observability.start_request)
    app.after_request(observability.finish_request)
    cors.init_app(app)  # Flask-CORS's after_request hook (preflights, /openapi.json; see cors.py)

    from .blueprints import api, docs, health, metrics

    for blueprint in (health.bp, metrics.bp, docs.bp, api):
        app.register_blueprint(blueprint)

    from .cli import register_commands

    register_commands(app)
    with app.app_context():
        _engines.update(db.engines.values())
        for engine in db.engines.values():
            db_deadline.watch(engine)
    return app


#: Every app's engines, for ``after_fork``.
_engines: weakref.WeakSet = weakref.WeakSet()


def after_fork() -> None:
    """In a gunicorn worker forked from a preloaded master (``post_fork``): never talk on, or close, its connections.

    The pools and ``direct_reads`` forget theirs without closing them; redis-py
    and the ClickHouse pool notice the new process by themselves.
    """
    for engine in list(_engines):
        engine.dispose(close=False)
    direct_reads.forget_connections()
