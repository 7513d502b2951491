"""OpenAI-style billing endpoints, for clients built against OpenAI's old dashboard API.

NextChat (ChatGPT-Next-Web) and similar clients read a key's credit from
``/dashboard/billing/subscription`` and ``/dashboard/billing/usage`` (with or
without ``/v1``) and show ``hard_limit_usd - total_usage / 100`` as the balance.
The bodies follow what one-api itself returns, plus ``success``. Amounts are
always USD and US cents, whatever ``BALANCE_UNIT`` says, because that is what
these clients assume.

``BILLING_SOURCE`` chooses whose numbers are shown: the key's (``token``, the
default, like one-api's DisplayTokenStatEnabled) or its owner's account
(``user``). The ``start_date``/``end_date`` query parameters the clients send
are accepted and ignored, as one-api does: the gateway tables keep lifetime
totals only, and refusing a parameter that could not change the answer would
only break clients that format dates differently.
"""

from __future__ import annotations

from decimal import Decimal

from flask import Blueprint, Response, current_app, g, jsonify

from ..gateway import Balance
from ..units import billing_amounts

bp = Blueprint("billing", __name__)


def _amounts() -> tuple[Decimal, Decimal]:
    """``(hard_limit_usd, total_usage_cents)`` of the key or of its owner, per ``BILLING_SOURCE``."""
    cfg = current_app.config
    if cfg["BILLING_SOURCE"] == "user":
        balance = Balance.of_user(g.user, cfg["UNLIMITED_USER_ROLES"])
    else:
        balance = Balance.of_token(g.token)
    return billing_amounts(balance.remaining, balance.used, balance.unlimited, cfg["QUOTA_PER_UNIT"])


@bp.get("/v1/dashboard/billing/subscription")
@bp.get("/dashboard/billing/subscription")
def subscription() -> Response:
    """The total credit as OpenAI's subscription object; ``access_until`` is when the key expires (0: never)."""
    limit, _ = _amounts()
    expires = int(g.token.expired_time)
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
    """Lifetime usage in US cents; ``start_date``/``end_date`` are ignored (see the module docstring)."""
    _, cents = _amounts()
    return jsonify(success=True, object="list", total_usage=cents)
