"""CORS: pages on other origins may call the API and read its answers, errors included; preflights need no key.

Flask-CORS answers preflights and sets the headers everywhere else, but it
works them out again for every response (about 7 % of a balance request's
CPU). For the API's own routes the headers depend only on the request's
``Origin`` (and the private-network request header), so they are computed once
per such value, by Flask-CORS's own function with the same options, and
reused. Flask-CORS sees them already set and leaves the response alone.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, current_app, request
from flask_cors.core import get_cors_headers, get_cors_options

from .config import CORS_MAX_AGE
from .config import EXTENSION as SETTINGS
from .extensions import cors

#: Distinct Origin values remembered; past that (a client making up origins) headers are computed each time.
_MAX_REMEMBERED = 64
_PRIVATE_NETWORK = "Access-Control-Request-Private-Network"
_ALLOW_ORIGIN = "Access-Control-Allow-Origin"
_EXTENSION = "balance_cors_headers"


def init_app(app: Flask) -> None:
    """Flask-CORS on the API, the docs and the OpenAPI document; the options ``api_cors_headers`` caches from."""
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
    # The options Flask-CORS resolved for those resources (none has options of its own), and the
    # headers worked out per (Origin, private-network request header).
    app.extensions[_EXTENSION] = (get_cors_options(app, options), {})


def api_cors_headers(response: Response) -> Response:
    """``after_request`` of the ``api`` blueprint: the CORS headers of its answers, worked out once per Origin.

    Runs before Flask-CORS's own app-wide hook, which then finds them set and
    leaves the response alone. Preflights are Flask-CORS's own business.
    """
    req = request._get_current_object()  # once: each proxy lookup costs, on every request
    response_headers = response.headers
    if req.method == "OPTIONS" or _ALLOW_ORIGIN in response_headers:
        return response  # a preflight, or an error answer that Flask-CORS's wrapper of the handlers did already
    resolved, remembered = current_app.extensions[_EXTENSION]
    headers = req.headers
    key = (headers.get("Origin"), headers.get(_PRIVATE_NETWORK))
    found = remembered.get(key)
    if found is None:
        found = list(get_cors_headers(resolved, headers, req.method).items())
        if len(remembered) < _MAX_REMEMBERED:
            remembered[key] = found
    add = response_headers.add
    for name, value in found:
        add(name, value)
    return response
