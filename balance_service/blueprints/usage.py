"""``GET /v1/usage``: spend per day and per model over a date range, and when the credit runs out.

Read from the gateway's request logs (``balance_service.usage``); the key
authenticates as for the balance endpoints and nothing is written.
"""

from __future__ import annotations

from flask import Blueprint, Response, g, jsonify, request

from ..config import settings
from ..errors import ApiError
from ..gateway.rules import Balance
from ..usage.limit import usage_slots
from ..usage.report import logs_gap, usage_range, usage_report, utc_today
from ..usage.source import Scope
from . import alerts

bp = Blueprint("usage", __name__)

SCOPES = ("account", "key")


@bp.get("/v1/usage")
def usage() -> Response:
    scope_name = request.args.get("scope", "account").strip() or "account"
    if scope_name not in SCOPES:
        raise ApiError(400, "scope must be 'account' or 'key'")
    today = utc_today()
    start, end = usage_range(request.args, today)
    token, user = g.token, g.user
    if scope_name == "key":
        scope = Scope(user_id=token.user_id, token_id=token.id, token_name=token.name)
        balance = Balance.of_token(token)
    else:
        scope = Scope(user_id=user.id)
        balance = Balance.of_user(user, settings().unlimited_user_roles)
    with usage_slots().take():  # a 503 at once when other requests hold every slot
        body = usage_report(scope_name, scope, balance.remaining, balance.unlimited, start, end, today)
    return jsonify(success=True, **body)


@bp.get("/v1/capabilities")
def capabilities() -> Response:
    """What this service can show the key's holder, so that a page asks only for what exists.

    ``usage_history`` says whether ``GET /v1/usage`` can answer (it answers 409 when not, and a
    browser logs every 409 as an error); ``alerts`` lists the alert channels the create endpoint
    accepts here and that an alert can be sent a test notification. Both are read from the
    service itself (the logs, the alerts blueprint and the settings), never configured twice.
    """
    gap = logs_gap()
    reason, message = gap or (None, None)
    history = {"available": gap is None, "reason": reason, "message": message}
    return jsonify(success=True, usage_history=history, alerts={"channels": alerts.offered_channels(), "test": True})
