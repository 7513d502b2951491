"""Turn a balance into the JSON body both balance endpoints share."""

from __future__ import annotations

from flask import Response, jsonify

from .gateway.options import currency
from .gateway.rules import Balance


def balance_response(balance: Balance) -> Response:
    """The documented fields first, in the documented order, then ``unit`` and the older aliases.

    Clients written from the gateways' published docs read ``remain_balance``,
    ``used_balance`` and ``unlimited_quota``; cc-switch and the balance-monitor
    extension read ``balance`` (and ``used``), which carry the same values.
    """
    money = currency()
    remain_balance = money.balance(balance.remaining, balance.unlimited)
    used_balance = money.amount(balance.used)
    return jsonify(
        {
            "success": True,
            "remain_balance": remain_balance,
            "used_balance": used_balance,
            "unlimited_quota": balance.unlimited,
            "unit": money.unit,
            "balance": remain_balance,
            "used": used_balance,
        }
    )
