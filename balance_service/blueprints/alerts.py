"""``/v1/user/balance/alerts``: create, list and delete the caller's balance alerts.

The caller is the account behind the key. An alert watches either that
account's balance (``scope: account``) or the balance of the key making the
request (``scope: token``); ``flask check-alerts`` does the watching.
"""

from __future__ import annotations

import secrets
from contextlib import contextmanager, nullcontext
from datetime import datetime
from decimal import Decimal
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request
from sqlalchemy import delete, func, text

from ..alerts.models import SCOPE_ACCOUNT, SCOPE_TOKEN, STATE_ABOVE, BalanceAlert
from ..alerts.targets import TargetError, check_url
from ..errors import ApiError
from ..extensions import db
from ..units import MAX_QUOTA, conversion, quota_to_unit, unit_to_quota

bp = Blueprint("alerts", __name__)

_FIELDS = ("threshold", "webhook_url", "scope")
_MAX_ID = 2**31 - 1  # INTEGER; a larger id cannot exist and would be a database error on PostgreSQL


def _conversion() -> dict[str, Any]:
    return conversion(current_app.config)


def _threshold_quota(value: Any) -> int:
    """The threshold from the request, in the configured unit, as whole quota units."""
    if value is None:
        raise ApiError(400, "threshold is required")
    # bool is an int in Python but `true` is not a number in JSON.
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise ApiError(400, "threshold must be a JSON number")
    amount = Decimal(value)
    if not amount.is_finite() or amount < 0:
        raise ApiError(400, "threshold must be a non-negative number")
    conversion = _conversion()
    if conversion["unit"] == "tokens" and amount != amount.to_integral_value():
        raise ApiError(400, "threshold in tokens must be a whole number")
    if amount > MAX_QUOTA:
        raise ApiError(400, "threshold is too large")
    quota = unit_to_quota(amount, **conversion)
    if quota > MAX_QUOTA:
        raise ApiError(400, "threshold is too large")
    return quota


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds") + "Z"


def _present(alert: BalanceAlert) -> dict[str, Any]:
    conversion = _conversion()
    return {
        "id": alert.id,
        "scope": alert.scope,
        "token_id": alert.token_id,
        "threshold": quota_to_unit(alert.threshold, **conversion),
        "unit": conversion["unit"],
        "webhook_url": alert.webhook_url,
        "state": alert.state,
        "created_at": _iso(alert.created_at),
        "last_notified_at": _iso(alert.last_notified_at),
        "last_error": alert.last_error,
    }


#: First key of the PostgreSQL advisory lock that serializes alert creation per account ("bal\x01").
_CREATE_LOCK_CLASS = 0x62616C01


def _count_alerts(user_id: int) -> int:
    stmt = db.select(func.count()).select_from(BalanceAlert).where(BalanceAlert.user_id == user_id)
    return db.session.execute(stmt).scalar_one()


@contextmanager
def _named_lock(user_id: int):
    """MySQL/MariaDB: hold ``GET_LOCK`` for the account on a connection of its own.

    Named locks belong to a connection, not a transaction, so the lock is
    taken and released on a separate pooled connection that lives exactly as
    long as the session's insert-and-count transaction.
    """
    name = f"balance_alerts.create.{user_id}"
    with db.engine.connect() as connection:
        if connection.execute(text("SELECT GET_LOCK(:name, 10)"), {"name": name}).scalar() != 1:
            raise ApiError(503, "Another request for this account is still being stored; retry")
        try:
            yield
        finally:
            connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})


def _insert_within_cap(alert: BalanceAlert, limit: int) -> bool:
    """Insert and count in one transaction; keep the row only if the account is still within ``limit``.

    Counting after the insert makes concurrent POSTs of one account see each
    other once they take turns: on PostgreSQL a transaction-scoped advisory
    lock on the account (released at commit or rollback), on MySQL/MariaDB a
    named lock held around the transaction, and SQLite has one writer at a time.
    """
    dialect = db.session.get_bind().dialect.name
    lock = _named_lock(alert.user_id) if dialect in ("mysql", "mariadb") else nullcontext()
    with lock:
        if dialect == "postgresql":
            db.session.execute(db.select(func.pg_advisory_xact_lock(_CREATE_LOCK_CLASS, alert.user_id)))
        db.session.add(alert)
        db.session.flush()
        if _count_alerts(alert.user_id) > limit:
            db.session.rollback()
            return False
        db.session.commit()
    return True


@bp.post("/v1/user/balance/alerts")
def create_alert():
    """Validate everything first (the database is written only for a fully valid request)."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "Send a JSON object (Content-Type: application/json) with threshold and webhook_url")
    unknown = sorted(set(body) - set(_FIELDS))
    if unknown:
        raise ApiError(400, f"Unknown field(s): {', '.join(unknown)}; allowed: {', '.join(_FIELDS)}")
    threshold = _threshold_quota(body.get("threshold"))
    scope = body.get("scope", SCOPE_ACCOUNT)
    if scope not in (SCOPE_ACCOUNT, SCOPE_TOKEN):
        raise ApiError(400, "scope must be 'account' or 'token'")
    url = body.get("webhook_url")
    try:
        # Resolving may be slow: it happens before any database transaction is opened,
        # so no connection sits idle in a transaction meanwhile.
        check_url(url, current_app.config["ALERT_ALLOW_PRIVATE_TARGETS"])
    except TargetError as e:
        raise ApiError(400, e.message) from None
    limit = current_app.config["ALERT_MAX_PER_USER"]
    secret = secrets.token_hex(32)
    alert = BalanceAlert(
        user_id=g.user.id,
        token_id=g.token.id if scope == SCOPE_TOKEN else None,
        threshold=threshold,
        webhook_url=url,
        secret=secret,
        state=STATE_ABOVE,
    )
    if not _insert_within_cap(alert, limit):
        raise ApiError(409, f"An account can have at most {limit} alerts; delete one first")
    # The secret is shown this once; no other response carries it.
    return jsonify(success=True, alert={**_present(alert), "secret": secret}), 201


@bp.get("/v1/user/balance/alerts")
def list_alerts():
    stmt = db.select(BalanceAlert).where(BalanceAlert.user_id == g.user.id).order_by(BalanceAlert.id)
    alerts = db.session.execute(stmt).scalars().all()
    return jsonify(success=True, alerts=[_present(alert) for alert in alerts])


@bp.delete("/v1/user/balance/alerts/<int:alert_id>")
def delete_alert(alert_id: int):
    """Someone else's alert gets the same 404 as a missing one: ids reveal nothing."""
    deleted = 0
    if alert_id <= _MAX_ID:
        stmt = delete(BalanceAlert).where(BalanceAlert.id == alert_id, BalanceAlert.user_id == g.user.id)
        deleted = db.session.execute(stmt).rowcount
        db.session.commit()
    if not deleted:
        raise ApiError(404, "No such alert")
    return jsonify(success=True, deleted=alert_id)
