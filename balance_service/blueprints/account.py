"""``GET /v1/user/balance`` (also ``/user/balance``): the balance of the user account behind the key."""

from flask import Blueprint, g

from ..config import settings
from ..gateway.rules import Balance
from ..presenter import balance_response

bp = Blueprint("account", __name__)


@bp.get("/v1/user/balance")
@bp.get("/user/balance")
def user_balance():
    return balance_response(Balance.of_user(g.user, settings().unlimited_user_roles))
