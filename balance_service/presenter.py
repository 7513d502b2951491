"""Turn a balance into the JSON body both balance endpoints share."""

from __future__ import annotations

from flask import Response, current_app, jsonify

from .gateway import Balance
from .units import conversion, quota_to_unit, remaining_for_display


def balance_response(balance: Balance) -> Response:
    settings = conversion(current_app.config)
    return jsonify(
        success=True,
        balance=remaining_for_display(balance.remaining, balance.unlimited, **settings),
        used=quota_to_unit(balance.used, **settings),
        unlimited_quota=balance.unlimited,
        unit=settings["unit"],
    )
