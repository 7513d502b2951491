"""Turn raw quota numbers into the JSON body both balance endpoints share."""

from __future__ import annotations

from flask import Response, current_app, jsonify

from ..units import quota_to_unit, remaining_for_display


def balance_response(remaining: int, used: int, unlimited: bool) -> Response:
    cfg = current_app.config
    conversion = {
        "unit": cfg["BALANCE_UNIT"],
        "quota_per_unit": cfg["QUOTA_PER_UNIT"],
        "exchange_rate": cfg["USD_EXCHANGE_RATE"],
    }
    return jsonify(
        success=True,
        balance=remaining_for_display(remaining, unlimited, **conversion),
        used=quota_to_unit(used, **conversion),
        unlimited_quota=unlimited,
        unit=cfg["BALANCE_UNIT"],
    )
