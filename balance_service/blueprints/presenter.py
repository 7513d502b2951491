"""Turn raw quota numbers into the JSON body both balance endpoints share."""

from __future__ import annotations

from flask import Response, current_app, jsonify

from ..units import conversion, quota_to_unit, remaining_for_display


def balance_response(remaining: int, used: int, unlimited: bool) -> Response:
    settings = conversion(current_app.config)
    return jsonify(
        success=True,
        balance=remaining_for_display(remaining, unlimited, **settings),
        used=quota_to_unit(used, **settings),
        unlimited_quota=unlimited,
        unit=settings["unit"],
    )
