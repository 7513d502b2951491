"""The CORS headers of the API's answers, worked out once per ``Origin`` instead of on every response.

Flask-CORS works the headers out again for every response. For the API's own
routes they depend only on the request's ``Origin`` (and the private-network
request header), so they are computed once per such value, by Flask-CORS's own
function with the same options (``balance_service.cors``), and reused;
Flask-CORS's hook then finds them set and leaves the response alone.

Measured (bench/instructions.py, issue 17): a balance request costs 1,048K
instructions with it, 1,131K without (see the package's docstring).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, current_app, request
from flask_cors.core import get_cors_headers

#: Distinct Origin values remembered; past that (a client making up origins) headers are computed each time.
_MAX_REMEMBERED = 64
_PRIVATE_NETWORK = "Access-Control-Request-Private-Network"
_ALLOW_ORIGIN = "Access-Control-Allow-Origin"
_EXTENSION = "balance_cors_headers"


def init_app(app: Flask, resolved: dict[str, Any]) -> None:
    """Remember Flask-CORS's resolved options for ``app``; headers are added per Origin as they come."""
    app.extensions[_EXTENSION] = (resolved, {})


def api_cors_headers(response: Response) -> Response:
    """``after_request`` of the ``api`` blueprint (before Flask-CORS's app-wide one); preflights are Flask-CORS's."""
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
