"""Find balances that fell below their alert's threshold and notify each crossing once.

One query reads every alert with its current balance (balance_alerts joined to
users and tokens) and the state of the key that created it (tokens again).
What a key set up follows the key: the alerts of a creator the gateway deleted
never notify again, those of a disabled creator are paused until the gateway
enables it again (``_creator_hold``). The read transaction ends before any
notification is sent, so no database lock or connection is held across the
network. A crossing is claimed with a conditional UPDATE (``state`` from
``above`` to ``below``) before sending: of two runs at the same time only one
wins the claim, so the receiver gets one notification. A failed delivery
(including any unexpected exception while sending) puts the state back to
``above`` with ``last_error`` set, and the next run tries again.

If the process dies between the claim and the send, that one notification is
lost (the state already says ``below``); the opposite order could send twice.

Deliveries run concurrently (``--workers`` at a time), each bounded by
``--deadline`` in all, so a webhook or chat service that never answers delays
no one else's; every channel (webhook, Apprise notify, e-mail) is sent and
retried the same way (``delivery.retrying``). Every account's first due alert goes before any account's
second, and alerts that failed before go after those that did not. A failed
alert is held back (``next_attempt_at``): 60 s after its first failure,
doubling with each further one up to ``--max-backoff``. Only this
process's main thread touches the database; the worker threads only send.

A forecast alert (``days_left`` set) reads the scope's spend forecast from the
gateway's logs instead of comparing the balance: it is below when the
forecast's days left are fewer than the alert's. A forecast that cannot be
told (no logs, nothing spent in the window, unlimited credit) is never below,
so it re-arms the alert and never fires. The forecasts are read in the main
thread, before any delivery starts.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any

from flask import current_app
from sqlalchemy import update
from sqlalchemy.engine import Row
from sqlalchemy.exc import SQLAlchemyError

from ..config import settings
from ..extensions import db
from ..gateway.keys import join_figures
from ..gateway.options import currency
from ..gateway.rules import Balance, account_disabled, read_refusal, token_refusal
from ..gateway.tables import User
from ..migrations import require_current
from ..usage.forecast import Forecast
from ..usage.report import present_forecast, scope_forecast
from ..usage.source import Scope
from . import channels
from .delivery import DeliveryResult, deliver
from .messages import Facts, compose
from .models import (
    CHANNEL_EMAIL,
    CHANNEL_WEBHOOK,
    SCOPE_ACCOUNT,
    SCOPE_TOKEN,
    STATE_ABOVE,
    STATE_BELOW,
    BalanceAlert,
    days_of,
    utcnow,
)

log = logging.getLogger(__name__)

EVENT_BELOW_THRESHOLD = "balance.below_threshold"
EVENT_FORECAST_BELOW_DAYS = "balance.forecast_below_days"
#: The test button's webhook event (``POST /v1/user/balance/alerts/<id>/test``).
EVENT_TEST = "balance.test"
#: Seconds a failed alert waits after its first failure; each further failure doubles it.
FIRST_BACKOFF = 60
#: What ``_creator_hold`` says about an alert whose creating key the gateway deleted or disabled.
CREATOR_DELETED, CREATOR_DISABLED = "deleted", "disabled"


@dataclass
class CheckSummary:
    """What one run did, for the command's output and for tests."""

    checked: int = 0
    notified: int = 0
    failed: int = 0
    rearmed: int = 0
    skipped: int = 0
    deferred: int = 0
    #: Of ``skipped``: alerts whose creating key was deleted (for good), or is disabled (paused).
    creator_deleted: int = 0
    creator_disabled: int = 0

    def __str__(self) -> str:
        return (
            f"checked {self.checked} alerts: {self.notified} notified, {self.failed} failed, "
            f"{self.rearmed} re-armed, {self.skipped} skipped (key or account gone or disabled, or the forecast "
            f"unreadable; {self.creator_deleted} created by a key since deleted, {self.creator_disabled} by a key "
            f"now disabled), {self.deferred} held back after failed deliveries"
        )


def _alerts_with_balances() -> list[Row]:
    """Every alert with the balance it watches and the state of its creating key, in one statement."""
    alerts = db.select(
        BalanceAlert.id,
        BalanceAlert.user_id,
        BalanceAlert.token_id,
        BalanceAlert.threshold,
        BalanceAlert.days_left_tenths,
        BalanceAlert.state,
        BalanceAlert.webhook_url,
        BalanceAlert.secret,
        BalanceAlert.failures,
        BalanceAlert.next_attempt_at,
        BalanceAlert.created_by_token_id,
        BalanceAlert.channel,
        BalanceAlert.target,
        BalanceAlert.lang,
        User.username,
    ).select_from(BalanceAlert)
    # The creator is a key of the alert's account that the gateway has not deleted, like the watched key.
    stmt = join_figures(alerts, BalanceAlert.user_id, BalanceAlert.token_id, BalanceAlert.created_by_token_id).order_by(
        BalanceAlert.id
    )
    return list(db.session.execute(stmt).all())


def _creator_hold(row: Row) -> str | None:
    """Why the key that created the alert stops it: ``deleted`` (for good), ``disabled`` (paused), or None.

    Only a revocation by the gateway counts. An expired or exhausted creator
    still reads its balance and lists and deletes its alerts, and its holder
    revoked nothing, so its alerts go on (a token-scoped alert watches that very
    key, and an expired key's balance is skipped as before). Alerts stored
    before creators were recorded have none and are not held.
    """
    if row.created_by_token_id is None:
        return None
    if row.creator.id is None:
        return CREATOR_DELETED
    if read_refusal(row.creator):  # only a disabled key may not read
        return CREATOR_DISABLED
    return None


def _balance(row: Row, now: int) -> Balance | None:
    """The balance the alert watches, or None when that key or account is unusable."""
    if account_disabled(row.user):
        return None
    if row.token_id is None:
        return Balance.of_user(row.user, settings().unlimited_user_roles)
    if row.token.id is None or token_refusal(row.token.status, row.token.expired_time, now):
        return None
    return Balance.of_token(row.token)


@dataclass(frozen=True)
class Reading:
    """Whether the watched figure is below the alert's limit (None: cannot tell this run), and the forecast."""

    below: bool | None
    forecast: Forecast | None = None


def _forecast_reading(row: Row, balance: Balance, today: date) -> Reading:
    """Below when the forecast's days left are fewer than the alert's; no forecast is never below."""
    if balance.unlimited:
        return Reading(False)
    if row.token_id is None:
        scope = Scope(user_id=row.user_id)
    else:
        scope = Scope(user_id=row.user_id, token_id=row.token_id, token_name=row.token.name)
    try:
        result = scope_forecast(scope, balance.remaining, False, today)
    except SQLAlchemyError as e:
        # The log database may be another server: its outage must not stop the other alerts.
        log.warning("alert %s: the forecast could not be read: %s", row.id, type(e).__name__)
        return Reading(None)
    if result is None or result.days_left is None:
        return Reading(False)
    return Reading(result.days_left < days_of(row.days_left_tenths), result)


def reading(row: Row, balance: Balance, today: date) -> Reading:
    """Where the alert's watched figure stands: the balance against ``threshold``, or the forecast."""
    if row.days_left_tenths is not None:
        return _forecast_reading(row, balance, today)
    return Reading(not balance.unlimited and balance.remaining < row.threshold)


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


def _event(forecast: Forecast | None) -> str:
    return EVENT_BELOW_THRESHOLD if forecast is None else EVENT_FORECAST_BELOW_DAYS


def _forecast_fields(row: Row, forecast: Forecast) -> dict[str, Any]:
    """What a forecast notification says instead of a threshold: the alert's days and the forecast itself."""
    return {
        "threshold": None,
        "days_left": days_of(row.days_left_tenths),
        "forecast": present_forecast(forecast),
    }


def _payload(row: Any, quota: int | None, now: int, forecast: Forecast | None = None, test: bool = False) -> bytes:
    """The webhook's JSON body. ``test``: the test button's (event ``balance.test``, ``"test": true``),
    whose ``balance`` is null when the watched balance cannot be read now."""
    money = currency()
    payload = {
        "event": EVENT_TEST if test else _event(forecast),
        "alert_id": row.id,
        "scope": SCOPE_ACCOUNT if row.token_id is None else SCOPE_TOKEN,
        "user_id": row.user_id,
        "token_id": row.token_id,
        "balance": None if quota is None else money.balance(quota, False),
        "threshold": money.amount(row.threshold),
        "unit": money.unit,
        "timestamp": now,
    }
    if forecast is not None:
        payload.update(_forecast_fields(row, forecast))
    elif row.days_left_tenths is not None:
        payload.update(threshold=None, days_left=days_of(row.days_left_tenths))
    if test:
        payload["test"] = True
    return current_app.json.dumps(payload).encode()


def test_webhook_job(
    alert: BalanceAlert, quota: int | None, now: int, how: channels.Sending
) -> Callable[[], DeliveryResult]:
    """The test button's webhook: signed like a notification, marked as a test."""
    return _webhook_job(alert.webhook_url, _payload(alert, quota, now, test=True), alert.secret, EVENT_TEST, now, how)


def _webhook_job(
    url: str, body: bytes, secret: str, event: str, now: int, how: channels.Sending
) -> Callable[[], DeliveryResult]:
    """A signed POST of ``body`` to ``url``, sent the way ``how`` says, to run later (in a worker thread)."""
    return partial(
        deliver,
        url,
        body,
        secret,
        event=event,
        timestamp=now,
        allow_private=how.allow_private,
        timeout=how.timeout,
        attempts=how.attempts,
        backoff=how.backoff,
        dns_timeout=how.dns_timeout,
        deadline=how.deadline,
    )


def _run(job: Callable[[], DeliveryResult]) -> DeliveryResult:
    """Runs in a worker thread: no app context, no database, only the network."""
    try:
        return job()
    except Exception as e:  # noqa: BLE001 - a claimed crossing must never stay "below" unsent
        return DeliveryResult(False, 0, _unexpected(e))


def watched_name(scope: str, username: str | None, token_name: str | None) -> str:
    """How a message names what the alert watches: the account's user name or the key's name (never the key)."""
    name = username if scope == SCOPE_ACCOUNT else token_name
    return name or "?"


def _facts(row: Row, quota: int, forecast: Forecast | None) -> Facts:
    scope = SCOPE_ACCOUNT if row.token_id is None else SCOPE_TOKEN
    forecast_alert = row.days_left_tenths is not None
    return Facts(
        currency=currency(),
        scope=scope,
        name=watched_name(scope, row.username, row.token.name),
        quota=quota,
        threshold=None if forecast_alert else row.threshold,
        watched_days=days_of(row.days_left_tenths),
        forecast_days=None if forecast is None else forecast.days_left,
        topup_url=settings().alert_topup_url,
    )


def message_job(
    channel: str, target: str, title: str, body: str, how: channels.Sending
) -> Callable[[], DeliveryResult]:
    """Sending a person's message of a ``notify`` or ``email`` alert, as one call for a worker thread.

    A scheme the operator has since taken off ``ALERT_NOTIFY_SCHEMES`` fails
    here, before anything is sent; so does an e-mail alert once ALERT_SMTP_URL is unset.
    """
    if channel == CHANNEL_EMAIL:
        smtp_url = settings().alert_smtp_url
        return partial(channels.send_email, smtp_url, target, title, body, how)
    try:
        channels.notify_scheme(target, settings().alert_notify_schemes)
    except channels.ChannelError as e:
        return partial(DeliveryResult, False, 0, e.message)
    return partial(channels.send_notify, target, title, body, how)


def sending_options(delivery: DeliveryOptions) -> channels.Sending:
    """``check-alerts``' options and the address policy, as every channel's sender takes them."""
    return channels.Sending(
        allow_private=settings().alert_allow_private_targets,
        timeout=delivery.timeout,
        attempts=delivery.attempts,
        backoff=delivery.backoff,
        deadline=delivery.deadline,
    )


def _job(
    row: Row, quota: int, now: int, forecast: Forecast | None, how: channels.Sending
) -> Callable[[], DeliveryResult]:
    """What to send for this crossing, built in the main thread (it reads settings and the gateway's currency)."""
    if row.channel == CHANNEL_WEBHOOK:
        body = _payload(row, quota, now, forecast)
        return _webhook_job(row.webhook_url, body, row.secret, _event(forecast), now, how)
    title, text = compose(_facts(row, quota, forecast), row.lang)
    return message_job(row.channel, row.target, title, text, how)


def _unexpected(error: Exception) -> str:
    # Only the type: a message could quote the URL, which may carry the receiver's token.
    return f"unexpected error while sending ({type(error).__name__})"


def _fair_order(due: list[tuple[Row, int]]) -> list[tuple[Row, int]]:
    """Alerts that never failed first, then every account's first alert before any account's second."""
    seen: dict[int, int] = defaultdict(int)
    ranked = []
    for row, quota in sorted(due, key=lambda item: item[0].id):
        ranked.append(((row.failures > 0, seen[row.user_id], row.id), row, quota))
        seen[row.user_id] += 1
    return [(row, quota) for _, row, quota in sorted(ranked, key=lambda item: item[0])]


@dataclass(frozen=True)
class DeliveryOptions:
    """How ``check-alerts`` delivers: its command-line options (alerts/cli.py), with these defaults."""

    #: Seconds one attempt may take (connect, send, answer).
    timeout: float = 5.0
    attempts: int = 3
    #: Seconds before the second attempt; it doubles before each further one.
    backoff: float = 1.0
    #: Deliveries at once.
    workers: int = 8
    #: Seconds one alert's delivery may take in all (attempts, lookups and pauses).
    deadline: float = 30.0
    #: The longest a failing alert is held back (its pause doubles from 60 s up to this).
    max_backoff: int = 3600


def backoff_seconds(failures: int, cap: int) -> int:
    """How long an alert that has now failed ``failures`` times in a row is held back."""
    return min(FIRST_BACKOFF * 2 ** min(failures - 1, 32), cap)


def _record(row: Row, result: DeliveryResult, moment: datetime, summary: CheckSummary, max_backoff: int) -> None:
    if result.ok:
        db.session.execute(
            update(BalanceAlert)
            .where(BalanceAlert.id == row.id)
            .values(last_notified_at=utcnow(), last_error=None, failures=0, next_attempt_at=None)
        )
        db.session.commit()
        summary.notified += 1
        return
    # Back to "above" so a later run sends it again, once the pause is over; nothing is lost.
    failures = (row.failures or 0) + 1
    pause = backoff_seconds(failures, max_backoff)
    _set_state(
        row.id,
        STATE_BELOW,
        state=STATE_ABOVE,
        last_error=result.error,
        failures=failures,
        next_attempt_at=moment + timedelta(seconds=pause),
    )
    summary.failed += 1
    log.warning(
        "alert %s: notification failed (%d in a row, next try in %d s): %s", row.id, failures, pause, result.error
    )


def _deliver_all(
    due: Iterable[tuple[Row, int]],
    now: int,
    moment: datetime,
    summary: CheckSummary,
    forecasts: dict[int, Forecast],
    delivery: DeliveryOptions,
) -> None:
    """Claim each due crossing and send it on the pool; record every outcome here, in the main thread.

    ``forecasts`` holds the forecast of each due forecast alert, by alert id.
    """
    how = sending_options(delivery)
    with ThreadPoolExecutor(max_workers=delivery.workers, thread_name_prefix="alert") as pool:
        sending: dict[Future[DeliveryResult], Row] = {}
        for row, quota in due:
            if not claim(row.id):
                continue  # another run is notifying this crossing right now
            forecast = forecasts.get(row.id)
            try:
                job = _job(row, quota, now, forecast, how)
            except Exception as e:  # noqa: BLE001 - a claimed crossing must never stay "below" unsent
                _record(row, DeliveryResult(False, 0, _unexpected(e)), moment, summary, delivery.max_backoff)
                continue
            sending[pool.submit(_run, job)] = row
        for future in as_completed(sending):
            _record(sending[future], future.result(), moment, summary, delivery.max_backoff)


def check_alerts(now: int | None = None, delivery: DeliveryOptions | None = None) -> CheckSummary:
    """One pass over all alerts: notify new crossings below, re-arm alerts whose balance recovered.

    ``now`` (Unix seconds) is the time the pass acts at; tests move it forward
    to see held-back alerts come due. ``delivery``: the command's options.
    """
    summary = CheckSummary()
    now = int(time.time()) if now is None else now
    moment = datetime.fromtimestamp(now, UTC).replace(tzinfo=None)
    require_current(db.engine)  # NotMigrated until init-db ran; never DDL from here
    today = moment.date()  # the UTC day of the pass: the forecast window ends there
    rows = _alerts_with_balances()
    db.session.commit()  # end the read transaction before the first notification
    due = []
    forecasts: dict[int, Forecast] = {}
    for row in rows:
        summary.checked += 1
        hold = _creator_hold(row)
        if hold is not None:
            # Not even re-armed: a paused alert picks up where it was once its key is enabled again.
            summary.skipped += 1
            if hold == CREATOR_DELETED:
                summary.creator_deleted += 1
            else:
                summary.creator_disabled += 1
            continue
        balance = _balance(row, now)
        if balance is None:
            summary.skipped += 1
            continue
        where = reading(row, balance, today)
        if where.below is None:
            summary.skipped += 1
            continue
        if not where.below:
            # Rising back to the threshold (or the days left) re-arms the alert; it sends nothing.
            if row.state == STATE_BELOW and _set_state(row.id, STATE_BELOW, state=STATE_ABOVE):
                summary.rearmed += 1
            continue
        if row.state != STATE_ABOVE:
            continue  # already notified
        if row.next_attempt_at is not None and row.next_attempt_at > moment:
            summary.deferred += 1
            continue
        due.append((row, balance.remaining))
        if where.forecast is not None:
            forecasts[row.id] = where.forecast
    _deliver_all(_fair_order(due), now, moment, summary, forecasts, delivery or DeliveryOptions())
    return summary
