"""``GET /v1/user/balance``: the balance of the user account behind the key."""

from flask import Blueprint, g

from ..auth import role_is_unlimited
from .presenter import balance_response

bp = Blueprint("account", __name__)


@bp.get("/v1/user/balance")
def user_balance():
    user = g.user
    return balance_response(user.quota, user.used_quota, role_is_unlimited(user.role))
