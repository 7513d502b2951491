"""``GET /v1/balance``: the balance of the one key that made the request."""

from flask import Blueprint, g

from .presenter import balance_response

bp = Blueprint("token", __name__)


@bp.get("/v1/balance")
def token_balance():
    token = g.token
    return balance_response(token.remain_quota, token.used_quota, bool(token.unlimited_quota))
