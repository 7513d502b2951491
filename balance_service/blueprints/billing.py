"""OpenAI-style billing endpoints, for clients built against OpenAI's old dashboard API.

NextChat (ChatGPT-Next-Web) and similar clients show ``hard_limit_usd -
total_usage / 100`` as the balance. The bodies follow what one-api itself
returns, plus ``success``; amounts are always USD and US cents, whatever the
display unit is, because that is what these clients assume. Whose numbers are
shown follows the gateway's own ``DisplayTokenStatEnabled``, as one-api does:
on (the default), the key's; off, its owner's account.
"""

from __future__ import annotations

from decimal import Decimal

from flask import Blueprint, Response, g, jsonify, request

from ..config import settings
from ..gateway.logs import Scope
from ..gateway.options import currency, gateway_options
from ..gateway.rules import Balance
from ..usage.limit import usage_slots
from ..usage.report import billing_range, ranged_billing_cents

bp = Blueprint("billing", __name__)


def _amounts() -> tuple[Decimal, Decimal]:
    """``(hard_limit_usd, total_usage_cents)`` of the key or of its owner, per ``DisplayTokenStatEnabled``."""
    if gateway_options().display_token_stat:
        balance = Balance.of_token(g.token)
    else:
        balance = Balance.of_user(g.user, settings().unlimited_user_roles)
    return currency().billing(balance.remaining, balance.used, balance.unlimited)


@bp.get("/v1/dashboard/billing/subscription")
@bp.get("/dashboard/billing/subscription")
def subscription() -> Response:
    """The total credit as OpenAI's subscription object; ``access_until`` is when the key expires (0: never, or
    the account's figures are shown)."""
    limit, _ = _amounts()
    expires = int(g.token.expired_time) if gateway_options().display_token_stat else 0
    return jsonify(
        success=True,
        object="billing_subscription",
        has_payment_method=True,
        soft_limit_usd=limit,
        hard_limit_usd=limit,
        system_hard_limit_usd=limit,
        access_until=max(expires, 0),  # the gateways' NEVER_EXPIRES (-1) becomes 0, as in one-api
    )


@bp.get("/v1/dashboard/billing/usage")
@bp.get("/dashboard/billing/usage")
def usage() -> Response:
    """Usage in US cents: of the date range (``start_date``/``end_date``, UTC days, end exclusive, as NextChat
    sends them) from the request logs when they can tell (a ``logs`` table, consume logging on), else lifetime."""
    dates = billing_range(request.args)
    if dates is not None:
        token = g.token
        if gateway_options().display_token_stat:
            scope = Scope(user_id=token.user_id, token_id=token.id, token_name=token.name)
        else:
            scope = Scope(user_id=g.user.id)
        with usage_slots().take():  # a 503 at once when other requests hold every slot
            cents = ranged_billing_cents(scope, *dates)
        if cents is not None:
            return jsonify(success=True, object="list", total_usage=cents)
    _, cents = _amounts()
    return jsonify(success=True, object="list", total_usage=cents)
