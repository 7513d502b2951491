"""``/v1/user/balance/alerts``: create, list, delete and test the caller's balance alerts.

The caller is the key: it sees and deletes the alerts it created, and (without
their webhook URL) its account's alerts that no live key owns: no recorded
creator, or a creator the gateway deleted. An alert watches either the balance
of the account behind the key (``scope: account``) or the balance of the key
itself (``scope: token``), either against an amount (``threshold``) or against
the spend forecast's days left (``days_left``); ``flask check-alerts`` does
the watching. An alert sends to one channel: a signed ``webhook_url``, an
Apprise ``notify_url`` (chat, push) or an ``email`` address through the
operator's mail server. Storage and the per-account cap are in
``alerts/store.py``; this module checks requests and shapes answers. Apprise
never loads in this process: checking a notify_url and sending a test message
through it run in a child (``alerts/isolated.py``).
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from flask import Blueprint, g, jsonify, request
from werkzeug.exceptions import TooManyRequests

from ..alerts import channels, isolated, store
from ..alerts.checker import DeliveryOptions, sending_options, test_webhook_job, watched_name
from ..alerts.delivery import DeliveryResult
from ..alerts.messages import Facts, compose
from ..alerts.models import (
    CHANNEL_EMAIL,
    CHANNEL_NOTIFY,
    CHANNEL_WEBHOOK,
    LANGUAGES,
    SCOPE_ACCOUNT,
    SCOPE_TOKEN,
    STATE_ABOVE,
    BalanceAlert,
    days_of,
)
from ..alerts.targets import TargetError, check_url, resolve
from ..config import settings
from ..errors import ApiError
from ..extensions import db
from ..gateway.money import AmountError, NotWhole
from ..gateway.options import currency
from ..gateway.rules import Balance, alert_refusal
from ..gateway.tables import Token, User
from ..migrations import NotMigrated
from ..usage.limit import usage_slots

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


_FIELDS = ("threshold", "days_left", "webhook_url", "notify_url", "email", "scope", "lang")
#: The request field of each channel: exactly one of them is given.
_CHANNEL_OF = {"webhook_url": CHANNEL_WEBHOOK, "notify_url": CHANNEL_NOTIFY, "email": CHANNEL_EMAIL}
#: The channels' request fields, in the order a page offers them.
CHANNEL_FIELDS = tuple(_CHANNEL_OF)


def offered_channels() -> list[str]:
    """The channel fields a creation may use here: chat/push with schemes allowed, e-mail with a mail server."""
    config = settings()
    usable = {
        "webhook_url": True,
        "notify_url": bool(config.alert_notify_schemes),
        "email": bool(config.alert_smtp_url),
    }
    return [name for name in CHANNEL_FIELDS if usable[name]]


#: Seconds between two test messages of one alert.
TEST_INTERVAL = 60
#: How the test button sends: one attempt, all of it within 10 s, while the request waits.
TEST_DELIVERY = DeliveryOptions(attempts=1, deadline=10.0)
#: The test button's clock (Unix seconds); tests replace it to move time without waiting.
clock: Callable[[], float] = time.time
#: The answer when the host is busy with as much slow work as it allows. A test send may wait 10 s on its target
#: (20 s in Apprise's child), and an account has up to 20 alerts, each testable once a minute, so a test takes one
#: of the slots the usage queries take (usage/limit.py): together at most half the cores' workers do slow work.
TEST_BUSY_MESSAGE = "Too many test messages are being sent; retry later"


#: Most days a forecast alert may look ahead; the forecast's own resolution is a tenth of a day.
MAX_DAYS_LEFT = 365


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
        return currency().parse(value)
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
    """The alert as the key ``viewer`` sees it: the webhook URL only for the key that created the alert.

    The URL may carry the receiver's token; the other alerts a key is shown
    (no recorded creator, or a deleted one) come without it. A notify URL and
    an e-mail address are shown masked, to every key (``channels.mask_*``);
    the full value is only stored.
    """
    money = currency()
    notify = alert.target if alert.channel == CHANNEL_NOTIFY and alert.target else None
    email = alert.target if alert.channel == CHANNEL_EMAIL and alert.target else None
    return {
        "id": alert.id,
        "scope": alert.scope,
        "token_id": alert.token_id,
        "threshold": None if alert.is_forecast else money.amount(alert.threshold),
        "days_left": days_of(alert.days_left_tenths),
        "unit": money.unit,
        "webhook_url": alert.webhook_url if alert.created_by_token_id == viewer else None,
        "state": alert.state,
        "created_at": _iso(alert.created_at),
        "last_notified_at": _iso(alert.last_notified_at),
        "last_error": alert.last_error,
        "channel": alert.channel,
        "notify_url": None if notify is None else channels.mask_notify_url(notify),
        "email": None if email is None else channels.mask_email(email),
        "lang": alert.lang,
        "last_tested_at": _iso(alert.last_test_at),
    }


def _lang(body: dict[str, Any]) -> str:
    """``lang`` from the request, else the best of ``LANGUAGES`` for its Accept-Language, else English."""
    if body.get("lang") is not None:
        if body["lang"] not in LANGUAGES:
            raise ApiError(400, f"lang must be one of {', '.join(LANGUAGES)}")
        return body["lang"]
    return request.accept_languages.best_match(LANGUAGES, default=LANGUAGES[0]) or LANGUAGES[0]


def _target(body: dict[str, Any]) -> tuple[str, str]:
    """``(channel, target)`` from exactly one of webhook_url, notify_url and email, each fully checked.

    Resolving and Apprise's parsing may be slow: this runs before any database
    transaction is opened, so no connection sits idle in a transaction meanwhile.
    """
    given = [name for name in _CHANNEL_OF if body.get(name) is not None]
    if len(given) != 1:
        raise ApiError(400, "Give exactly one of webhook_url, notify_url (an Apprise URL) and email")
    [name] = given
    value = body[name]
    config = settings()
    try:
        if name == "webhook_url":
            check_url(value, config.alert_allow_private_targets)
        elif name == "notify_url":
            channels.notify_scheme(value, config.alert_notify_schemes)
            host = channels.chosen_host(value)
            if host is not None:
                resolve(host, config.alert_allow_private_targets, field="notify_url")
            refusal = isolated.check_notify_url(value)
            if refusal is not None:
                raise ApiError(400, refusal)
        else:
            if config.alert_smtp_url is None:
                raise ApiError(400, "email alerts are off on this server: the operator has not set ALERT_SMTP_URL")
            channels.check_email(value)
    except (TargetError, channels.ChannelError) as e:
        raise ApiError(400, e.message) from None
    return _CHANNEL_OF[name], value


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
            400,
            "Send a JSON object (Content-Type: application/json) with threshold or days_left, and one of "
            "webhook_url, notify_url and email",
        )
    unknown = sorted(set(body) - set(_FIELDS))
    if unknown:
        raise ApiError(400, f"Unknown field(s): {', '.join(unknown)}; allowed: {', '.join(_FIELDS)}")
    threshold, days_left_tenths = _what_to_watch(body)
    scope = body.get("scope", SCOPE_ACCOUNT)
    if scope not in (SCOPE_ACCOUNT, SCOPE_TOKEN):
        raise ApiError(400, "scope must be 'account' or 'token'")
    lang = _lang(body)
    channel, target = _target(body)
    limit = store.MAX_ALERTS_PER_USER
    secret = secrets.token_hex(32)
    alert = BalanceAlert(
        user_id=g.user.id,
        token_id=g.token.id if scope == SCOPE_TOKEN else None,
        threshold=threshold,
        days_left_tenths=days_left_tenths,
        webhook_url=target if channel == CHANNEL_WEBHOOK else None,
        target=None if channel == CHANNEL_WEBHOOK else target,
        channel=channel,
        lang=lang,
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


def _test_facts(alert: BalanceAlert) -> tuple[Facts, int | None]:
    """What the test message says, and the watched balance now (None: cannot be read, or unlimited)."""
    balance: Balance | None = None
    if alert.token_id is None:
        balance = Balance.of_user(g.user, settings().unlimited_user_roles)
    elif alert.token_id == g.token.id:
        balance = Balance.of_token(g.token)
    quota = None if balance is None or balance.unlimited else balance.remaining
    username = db.session.execute(db.select(User.username).where(User.id == alert.user_id)).scalar()
    token_name = None
    if alert.token_id is not None:
        token_name = db.session.execute(db.select(Token.name).where(Token.id == alert.token_id)).scalar()
    db.session.commit()  # end the read transaction before the network
    scope = alert.scope
    facts = Facts(
        currency=currency(),
        scope=scope,
        name=watched_name(scope, username, token_name),
        quota=quota,
        threshold=None if alert.is_forecast else alert.threshold,
        watched_days=days_of(alert.days_left_tenths),
        topup_url=settings().alert_topup_url,
    )
    return facts, quota


def _send_test(alert: BalanceAlert, now: int) -> DeliveryResult:
    facts, quota = _test_facts(alert)
    how = sending_options(TEST_DELIVERY)
    if alert.channel == CHANNEL_WEBHOOK:
        return test_webhook_job(alert, quota, now, how)()
    if alert.channel == CHANNEL_NOTIFY:
        try:
            channels.notify_scheme(alert.target, settings().alert_notify_schemes)
        except channels.ChannelError as e:
            return DeliveryResult(False, 0, e.message)
    title, text = compose(facts, alert.lang, test=True)
    return isolated.send(alert.channel, alert.target, settings().alert_smtp_url, title, text, how)


def _within_interval(last: datetime | None, moment: datetime) -> bool:
    return last is not None and (moment - last).total_seconds() < TEST_INTERVAL


def _too_soon(last: datetime, moment: datetime) -> TooManyRequests:
    """The 429 for a press less than ``TEST_INTERVAL`` seconds after the test at ``last``."""
    wait = min(max(math.ceil(TEST_INTERVAL - (moment - last).total_seconds()), 1), TEST_INTERVAL)
    return TooManyRequests(f"One test per alert per minute; try again in {wait} s", retry_after=wait)


@bp.post("/v1/user/balance/alerts/<int:alert_id>/test")
def test_alert(alert_id: int):
    """Send a test message now; at most one per alert per ``TEST_INTERVAL`` seconds, across all workers.

    Sending is a use of the key, like creating: it needs a key the gateway
    still accepts. The time of the test is recorded before sending (a
    conditional UPDATE of ``last_test_at``), so a second press meanwhile gets 429.
    It takes one of the host's slots for slow work (503 at once when none is free).
    """
    refusal = alert_refusal(g.token, int(time.time()))
    if refusal:
        raise ApiError(403, refusal)
    alert = store.alert_of(alert_id, g.user.id, g.token.id)
    if alert is None:
        raise ApiError(404, "No such alert")
    now = int(clock())
    moment = datetime.fromtimestamp(now, UTC).replace(tzinfo=None)
    if _within_interval(alert.last_test_at, moment):  # as read with the alert: no slot for a press that waits
        raise _too_soon(alert.last_test_at, moment)
    # A slot before the claim: refused for being busy, the press has not used up the alert's test of this minute.
    with usage_slots().take(TEST_BUSY_MESSAGE):
        last = store.claim_test(alert.id, moment, TEST_INTERVAL)
        if last is not None:  # another press was faster
            raise _too_soon(last, moment)
        result = _send_test(alert, now)
    if not result.ok:
        raise ApiError(502, f"The test message was not delivered: {result.error}")
    return jsonify(success=True, delivered=True)
