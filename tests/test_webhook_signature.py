"""Webhook signatures cover the time and the delivery id: the documented ``verify()`` refuses replays.

``X-Balance-Signature: t=<unix>,d=<delivery id>,v1=<HMAC-SHA256 of "t.d.body">``.
The ``verify()`` in docs/alerts.md is run here, exactly as written, against
real notifications a real receiver on loopback got from ``check-alerts``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from balance_service.alerts.checker import DeliveryOptions, check_alerts
from tests.test_alert_webhooks import create_alert, run_check, running_receiver

DOCS = Path(__file__).resolve().parent.parent / "docs" / "alerts.md"


@pytest.fixture
def app(make_app):
    return make_app(ALERT_ALLOW_PRIVATE_TARGETS=True)


@pytest.fixture
def receiver():
    with running_receiver() as state:
        yield state


def documented_verify():
    """The ``verify()`` function exactly as docs/alerts.md shows it to receivers."""
    match = re.search(r"```python\n(.*?def verify\(.*?)```", DOCS.read_text(), re.S)
    assert match, "docs/alerts.md has no python block with verify()"
    namespace = {}
    exec(match.group(1), namespace)  # our own documentation's example, not outside input
    return namespace["verify"]


def with_field(header, name, value):
    """The signature header with one of its ``t``, ``d`` or ``v1`` fields replaced."""
    return ",".join(f"{name}={value}" if part.startswith(f"{name}=") else part for part in header.split(","))


@pytest.fixture
def notification(app, receiver, create_user, create_token):
    """One real notification: the alert's secret, the body and the signature header as received."""
    owner = create_user(quota=0)
    alert = create_alert(app, create_token(user_id=owner), receiver.url, "1")
    assert run_check(app).exit_code == 0
    [request] = receiver.requests
    return alert["secret"], request.body, request.headers["x-balance-signature"]


def test_the_signature_header_carries_the_time_the_delivery_id_and_the_hmac(notification):
    _, _, header = notification
    assert re.fullmatch(r"t=\d{10},d=[0-9a-f]{32},v1=[0-9a-f]{64}", header), header
    assert abs(int(header.split(",")[0][2:]) - time.time()) < 60


def test_the_documented_verify_accepts_a_real_notification_once(notification):
    secret, body, header = notification
    verify, seen = documented_verify(), set()
    assert verify(secret, body, header, seen) is True
    assert verify(secret, body, header, seen) is False, "the same delivery again is a replay"


def test_a_replay_with_a_fresh_timestamp_fails(notification):
    secret, body, header = notification
    verify = documented_verify()
    replayed = with_field(header, "t", str(int(time.time()) + 1))
    assert verify(secret, body, replayed, set()) is False


def test_a_replay_under_another_delivery_id_fails(notification):
    secret, body, header = notification
    assert documented_verify()(secret, body, with_field(header, "d", "0" * 32), set()) is False


def test_a_tampered_body_or_another_secret_fails(notification):
    secret, body, header = notification
    verify = documented_verify()
    tampered = body.replace(b'"balance":0', b'"balance":9')
    assert tampered != body
    assert verify(secret, tampered, header, set()) is False
    assert verify("0" * 64, body, header, set()) is False
    assert verify(secret, body, "sha256=" + header.rsplit("v1=", 1)[1], set()) is False, "the old header form"


def test_a_genuine_notification_older_than_five_minutes_fails(app, receiver, create_user, create_token):
    owner = create_user(quota=0)
    alert = create_alert(app, create_token(user_id=owner), receiver.url, "1")
    with app.app_context():
        summary = check_alerts(now=int(time.time()) - 301, delivery=DeliveryOptions(timeout=2))
    assert summary.notified == 1
    [request] = receiver.requests
    assert documented_verify()(alert["secret"], request.body, request.headers["x-balance-signature"], set()) is False
