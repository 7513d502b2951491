"""CORS: pages on other origins may call the API and read its answers, errors included; preflights need no key.

Flask-CORS answers preflights and sets the headers everywhere else; the API's
own answers get the same headers from a per-Origin cache
(``_internal/cors_headers.py``, registered on the ``api`` blueprint).
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_cors.core import get_cors_options

from ._internal import cors_headers
from .config import CORS_MAX_AGE
from .config import EXTENSION as SETTINGS
from .extensions import cors


def init_app(app: Flask) -> None:
    """Flask-CORS on the API, the docs and the OpenAPI document; its options for the API's cached headers."""
    options: dict[str, Any] = {
        "origins": app.extensions[SETTINGS].cors_origins,
        "allow_headers": ["Authorization", "Content-Type", "X-Request-ID"],
        "expose_headers": ["X-Request-ID", "Retry-After"],
        "methods": ["GET", "HEAD", "POST", "DELETE", "OPTIONS"],
        "max_age": CORS_MAX_AGE,
        "supports_credentials": False,
    }
    # The documented paths come with and without /v1 (/user/balance, /balance).
    resources = {r"/v1/*": {}, r"/user/*": {}, r"/balance": {}, r"/dashboard/*": {}, r"/openapi.json": {}}
    cors.init_app(app, resources=resources, **options)
    # The options Flask-CORS resolved for those resources (none has options of its own).
    cors_headers.init_app(app, get_cors_options(app, options))
