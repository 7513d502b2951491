"""``GET /v1/balance`` (also ``/balance``): the balance of the one key that made the request."""

from flask import Blueprint, g

from ..gateway.rules import Balance
from ..presenter import balance_response

bp = Blueprint("token", __name__)


@bp.get("/v1/balance")
@bp.get("/balance")
def token_balance():
    return balance_response(Balance.of_token(g.token))
