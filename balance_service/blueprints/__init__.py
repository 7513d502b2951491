"""Blueprints, one per concern. ``api`` is the authenticated parent of the balance routes."""

from flask import Blueprint

from ..auth import authenticate
from . import account, alerts, billing, token, usage

api = Blueprint("api", __name__)
api.before_request(authenticate)
api.register_blueprint(account.bp)
api.register_blueprint(token.bp)
api.register_blueprint(billing.bp)
api.register_blueprint(alerts.bp)
api.register_blueprint(usage.bp)
