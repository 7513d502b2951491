"""Blueprints, one per concern. ``api`` is the authenticated parent of the balance routes.

The ``api`` blueprint's own request hooks, in the order they run (Flask runs a
blueprint's hooks after the app's ``before_request`` ones and before its
``after_request`` ones, and the ``after_request`` ones in reverse order of
registration):
  before: 1. refuse_blocked_client (429 for an address with too many failed keys, before any lookup)
          2. authenticate (the key, or a 401/403/404)
  after:  1. count_failed_auth (sees the 401s)  2. CORS headers (_internal/cors_headers.py)
The app's own hooks (request id, metrics, the access line) are in ``create_app``.
"""

from flask import Blueprint

from .. import ratelimit
from .._internal import cors_headers
from ..auth import authenticate
from . import account, alerts, billing, token, usage

api = Blueprint("api", __name__)
api.before_request(ratelimit.refuse_blocked_client)
api.before_request(authenticate)
api.after_request(cors_headers.api_cors_headers)  # registered first, so it runs after count_failed_auth
api.after_request(ratelimit.count_failed_auth)
for child in (account, token, billing, alerts, usage):
    api.register_blueprint(child.bp)
