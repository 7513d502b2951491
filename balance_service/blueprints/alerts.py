"""``/v1/user/balance/alerts``: create, list and delete the caller's balance alerts.

The caller is the key: it sees and deletes the alerts it created, and (without
their webhook URL) its account's alerts that no live key owns: no recorded
creator, or a creator the gateway deleted. An alert watches either the balance
of the account behind the key (``scope: account``) or the balance of the key
itself (``scope: token``), either against an amount (``threshold``) or against
the spend forecast's days left (``days_left``); ``flask check-alerts`` does
the watching. Storage
and the per-account cap are in ``alerts/store.py``; this module checks
requests and shapes answers.
"""

from __future__ import annotations

import secrets
import time
from datetime import datetime
from decimal import Decimal
from typing import Any

from flask import Blueprint, g, jsonify, request

from ..alerts import store
from ..alerts.models import SCOPE_ACCOUNT, SCOPE_TOKEN, STATE_ABOVE, BalanceAlert
from ..alerts.targets import TargetError, check_url
from ..config import settings
from ..errors import ApiError
from ..gateway.money import AmountError, Currency, NotWhole
from ..gateway.options import currency
from ..gateway.rules import alert_refusal
from ..migrations import NotMigrated

bp = Blueprint("alerts", __name__)

#: The answer while the service's table is not migrated; the operator's log line says what to run.
NOT_SET_UP = "Balance alerts are not set up on this server yet; the operator has to run init-db"


@bp.before_request
def _table_ready() -> None:
    """503 until ``init-db`` has migrated ``balance_alerts`` (checked once per process; the log says it once).

    Not for a CORS preflight: it carries no key and must not fail on the database.
    """
    if request.method == "OPTIONS":
        return
    try:
        store.table_ready()
    except NotMigrated:
        raise ApiError(503, NOT_SET_UP) from None


_FIELDS = ("threshold", "days_left", "webhook_url", "scope")

#: Most days a forecast alert may look ahead; the forecast's own resolution is a tenth of a day.
MAX_DAYS_LEFT = 365


def _currency() -> Currency:
    return currency()


def _threshold_quota(value: Any) -> int:
    """The threshold from the request, in the configured unit, as whole quota units."""
    if value is None:
        raise ApiError(400, "threshold is required")
    # bool is an int in Python but `true` is not a number in JSON.
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise ApiError(400, "threshold must be a JSON number")
    if not Decimal(value).is_finite() or value < 0:
        raise ApiError(400, "threshold must be a non-negative number")
    try:
        return _currency().parse(value)
    except NotWhole:
        raise ApiError(400, "threshold in tokens must be a whole number") from None
    except AmountError:
        raise ApiError(400, "threshold is too large") from None


def _days_left_tenths(value: Any) -> int:
    """``days_left`` from the request (positive, at most ``MAX_DAYS_LEFT``, tenths at most) in tenths of a day."""
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise ApiError(400, "days_left must be a JSON number")
    days = Decimal(value)
    if not days.is_finite() or days <= 0 or days > MAX_DAYS_LEFT:
        raise ApiError(400, f"days_left must be more than 0 and at most {MAX_DAYS_LEFT}")
    tenths = days * 10
    if tenths != tenths.to_integral_value():
        raise ApiError(400, "days_left may have at most one decimal place (the forecast is in tenths of a day)")
    return int(tenths)


def _what_to_watch(body: dict[str, Any]) -> tuple[int, int | None]:
    """``(threshold quota, days_left tenths)``: exactly one of the two fields; a forecast alert stores threshold 0."""
    has_threshold, has_days = body.get("threshold") is not None, body.get("days_left") is not None
    if has_threshold and has_days:
        raise ApiError(400, "Give either threshold (an amount) or days_left (days of forecast spend), not both")
    if has_days:
        return 0, _days_left_tenths(body["days_left"])
    if not has_threshold:
        raise ApiError(400, "threshold or days_left is required")
    return _threshold_quota(body["threshold"]), None


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds") + "Z"


def _present(alert: BalanceAlert, viewer: int) -> dict[str, Any]:
    """The alert as the key ``viewer`` sees it: the URL only for the key that created the alert.

    The URL may carry the receiver's token; the other alerts a key is shown
    (no recorded creator, or a deleted one) come without it.
    """
    money = _currency()
    return {
        "id": alert.id,
        "scope": alert.scope,
        "token_id": alert.token_id,
        "threshold": None if alert.is_forecast else money.amount(alert.threshold),
        "days_left": None if alert.days_left_tenths is None else Decimal(alert.days_left_tenths) / 10,
        "unit": money.unit,
        "webhook_url": alert.webhook_url if alert.created_by_token_id == viewer else None,
        "state": alert.state,
        "created_at": _iso(alert.created_at),
        "last_notified_at": _iso(alert.last_notified_at),
        "last_error": alert.last_error,
    }


@bp.post("/v1/user/balance/alerts")
def create_alert():
    """Validate everything first (the database is written only for a fully valid request).

    Reading works with an expired key (``gateway.read_refusal``); creating an
    alert is a new use of the key, so it needs one the gateway still accepts.
    """
    refusal = alert_refusal(g.token, int(time.time()))
    if refusal:
        raise ApiError(403, refusal)
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(
            400, "Send a JSON object (Content-Type: application/json) with threshold or days_left, and webhook_url"
        )
    unknown = sorted(set(body) - set(_FIELDS))
    if unknown:
        raise ApiError(400, f"Unknown field(s): {', '.join(unknown)}; allowed: {', '.join(_FIELDS)}")
    threshold, days_left_tenths = _what_to_watch(body)
    scope = body.get("scope", SCOPE_ACCOUNT)
    if scope not in (SCOPE_ACCOUNT, SCOPE_TOKEN):
        raise ApiError(400, "scope must be 'account' or 'token'")
    url = body.get("webhook_url")
    try:
        # Resolving may be slow: it happens before any database transaction is opened,
        # so no connection sits idle in a transaction meanwhile.
        check_url(url, settings().alert_allow_private_targets)
    except TargetError as e:
        raise ApiError(400, e.message) from None
    limit = store.MAX_ALERTS_PER_USER
    secret = secrets.token_hex(32)
    alert = BalanceAlert(
        user_id=g.user.id,
        token_id=g.token.id if scope == SCOPE_TOKEN else None,
        threshold=threshold,
        days_left_tenths=days_left_tenths,
        webhook_url=url,
        secret=secret,
        state=STATE_ABOVE,
        created_by_token_id=g.token.id,
    )
    try:
        stored = store.add_within_cap(alert, limit)
    except store.StoreBusy:
        raise ApiError(503, "Another request for this account is still being stored; retry") from None
    if not stored:
        raise ApiError(409, f"An account can have at most {limit} alerts; delete one first")
    # The secret is shown this once; no other response carries it.
    return jsonify(success=True, alert={**_present(alert, g.token.id), "secret": secret}), 201


@bp.get("/v1/user/balance/alerts")
def list_alerts():
    alerts = store.alerts_of(g.user.id, g.token.id)
    return jsonify(success=True, alerts=[_present(alert, g.token.id) for alert in alerts])


@bp.delete("/v1/user/balance/alerts/<int:alert_id>")
def delete_alert(alert_id: int):
    """Someone else's alert gets the same 404 as a missing one: ids reveal nothing."""
    if not store.delete_alert(alert_id, g.user.id, g.token.id):
        raise ApiError(404, "No such alert")
    return jsonify(success=True, deleted=alert_id)
