"""Find balances that fell below their alert's threshold and notify each crossing once.

One query reads every alert with its current balance (balance_alerts joined to
users and tokens). The read transaction ends before any webhook is called, so
no database lock or connection is held across the network. A crossing is
claimed with a conditional UPDATE (``state`` from ``above`` to ``below``)
before sending: of two runs at the same time only one wins the claim, so the
receiver gets one notification. A failed delivery (including any unexpected
exception while sending) puts the state back to ``above`` with ``last_error``
set, and the next run tries again.

If the process dies between the claim and the send, that one notification is
lost (the state already says ``below``); the opposite order could send twice.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import and_, update
from sqlalchemy.engine import Row
from sqlalchemy.orm import Bundle

from ..extensions import db
from ..gateway import Balance, token_refusal
from ..models import USER_DISABLED, Token, User, live, soft_delete_columns
from ..units import conversion, quota_to_unit, remaining_for_display
from .delivery import deliver
from .models import SCOPE_ACCOUNT, SCOPE_TOKEN, STATE_ABOVE, STATE_BELOW, BalanceAlert, utcnow

log = logging.getLogger(__name__)

EVENT_BELOW_THRESHOLD = "balance.below_threshold"


@dataclass
class CheckSummary:
    """What one run did, for the command's output and for tests."""

    checked: int = 0
    notified: int = 0
    failed: int = 0
    rearmed: int = 0
    skipped: int = 0

    def __str__(self) -> str:
        return (
            f"checked {self.checked} alerts: {self.notified} notified, {self.failed} failed, "
            f"{self.rearmed} re-armed, {self.skipped} skipped (key or account gone or disabled)"
        )


def _alerts_with_balances() -> list[Row]:
    """Every alert with the balance it watches, in one statement."""
    tokens_soft, users_soft = soft_delete_columns(db.engine)
    user_on = and_(User.id == BalanceAlert.user_id, live(User, users_soft))
    token_on = and_(Token.id == BalanceAlert.token_id, Token.user_id == BalanceAlert.user_id, live(Token, tokens_soft))
    stmt = (
        db.select(
            BalanceAlert.id,
            BalanceAlert.user_id,
            BalanceAlert.token_id,
            BalanceAlert.threshold,
            BalanceAlert.state,
            BalanceAlert.webhook_url,
            BalanceAlert.secret,
            Bundle("user", User.quota, User.used_quota, User.role, User.status),
            # All None when the key is gone (outer join): ``row.token.id is None``.
            Bundle(
                "token",
                Token.id,
                Token.remain_quota,
                Token.used_quota,
                Token.unlimited_quota,
                Token.status,
                Token.expired_time,
            ),
        )
        .select_from(BalanceAlert)
        .join(User, user_on)
        .outerjoin(Token, token_on)
        .order_by(BalanceAlert.id)
    )
    return list(db.session.execute(stmt).all())


def _balance(row: Row, now: int) -> Balance | None:
    """The balance the alert watches, or None when that key or account is unusable."""
    if row.user.status == USER_DISABLED:
        return None
    if row.token_id is None:
        return Balance.of_user(row.user, current_app.config["UNLIMITED_USER_ROLES"])
    if row.token.id is None or token_refusal(row.token.status, row.token.expired_time, now):
        return None
    return Balance.of_token(row.token)


def _set_state(alert_id: int, expected: str, **values: Any) -> bool:
    """Conditional UPDATE, committed at once; True when this run changed the row."""
    result = db.session.execute(
        update(BalanceAlert).where(BalanceAlert.id == alert_id, BalanceAlert.state == expected).values(**values)
    )
    db.session.commit()
    return result.rowcount == 1


def claim(alert_id: int) -> bool:
    """Take the right to notify this crossing; only one of several concurrent runs gets True."""
    return _set_state(alert_id, STATE_ABOVE, state=STATE_BELOW)


def _notify(row: Row, quota: int, now: int) -> tuple[bool, str | None]:
    cfg = current_app.config
    settings = conversion(cfg)
    payload = {
        "event": EVENT_BELOW_THRESHOLD,
        "alert_id": row.id,
        "scope": SCOPE_ACCOUNT if row.token_id is None else SCOPE_TOKEN,
        "user_id": row.user_id,
        "token_id": row.token_id,
        "balance": remaining_for_display(quota, False, **settings),
        "threshold": quota_to_unit(row.threshold, **settings),
        "unit": cfg["BALANCE_UNIT"],
        "timestamp": now,
    }
    result = deliver(
        row.webhook_url,
        current_app.json.dumps(payload).encode(),
        row.secret,
        event=EVENT_BELOW_THRESHOLD,
        timestamp=now,
        allow_private=cfg["ALERT_ALLOW_PRIVATE_TARGETS"],
        timeout=cfg["ALERT_WEBHOOK_TIMEOUT"],
        attempts=cfg["ALERT_WEBHOOK_ATTEMPTS"],
        backoff=cfg["ALERT_RETRY_BACKOFF"],
        dns_timeout=cfg["ALERT_DNS_TIMEOUT"],
    )
    return result.ok, result.error


def check_alerts() -> CheckSummary:
    """One pass over all alerts: notify new crossings below, re-arm alerts whose balance recovered."""
    summary = CheckSummary()
    now = int(time.time())
    rows = _alerts_with_balances()
    db.session.commit()  # end the read transaction before the first webhook call
    for row in rows:
        summary.checked += 1
        balance = _balance(row, now)
        if balance is None:
            summary.skipped += 1
            continue
        if balance.unlimited or balance.remaining >= row.threshold:
            # Rising back to the threshold re-arms the alert; it sends nothing.
            if row.state == STATE_BELOW and _set_state(row.id, STATE_BELOW, state=STATE_ABOVE):
                summary.rearmed += 1
            continue
        if row.state != STATE_ABOVE or not claim(row.id):
            continue  # already notified, or another run is notifying right now
        try:
            ok, error = _notify(row, balance.remaining, now)
        except Exception as e:  # noqa: BLE001 - a claimed crossing must never stay "below" unsent
            # Only the type: a message could quote the URL, which may carry the receiver's token.
            ok, error = False, f"unexpected error while sending ({type(e).__name__})"
        if ok:
            db.session.execute(
                update(BalanceAlert).where(BalanceAlert.id == row.id).values(last_notified_at=utcnow(), last_error=None)
            )
            db.session.commit()
            summary.notified += 1
        else:
            # Back to "above" so the next run sends it again; nothing is lost.
            _set_state(row.id, STATE_BELOW, state=STATE_ABOVE, last_error=error)
            summary.failed += 1
            log.warning("alert %s: notification failed: %s", row.id, error)
    return summary
