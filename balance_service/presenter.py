"""Turn a balance into the JSON body both balance endpoints share."""

from __future__ import annotations

from flask import Response, current_app, jsonify

from .gateway import Balance
from .units import conversion, quota_to_unit, remaining_for_display


def balance_response(balance: Balance) -> Response:
    """The documented fields first, in the documented order, then ``unit`` and the older aliases.

    Clients written from the gateways' published docs read ``remain_balance``,
    ``used_balance`` and ``unlimited_quota``; cc-switch and the balance-monitor
    extension read ``balance`` (and ``used``), which carry the same values.
    """
    settings = conversion(current_app.config)
    remain_balance = remaining_for_display(balance.remaining, balance.unlimited, **settings)
    used_balance = quota_to_unit(balance.used, **settings)
    return jsonify(
        {
            "success": True,
            "remain_balance": remain_balance,
            "used_balance": used_balance,
            "unlimited_quota": balance.unlimited,
            "unit": settings["unit"],
            "balance": remain_balance,
            "used": used_balance,
        }
    )
