"""``GET /v1/user/balance``: the balance of the user account behind the key."""

from flask import Blueprint, current_app, g

from .presenter import balance_response

bp = Blueprint("account", __name__)


@bp.get("/v1/user/balance")
def user_balance():
    user = g.user
    # The gateway's users table has no "unlimited" column: roles listed in
    # UNLIMITED_USER_ROLES are reported as unlimited (none by default).
    unlimited = user.role in current_app.config["UNLIMITED_USER_ROLES"]
    return balance_response(user.quota, user.used_quota, unlimited)
