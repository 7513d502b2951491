"""``POST /v1/user/balance/alerts/<id>/test``: a marked test message now, at most one per alert per minute.

Every channel, to real receivers on loopback: the signed webhook, an ntfy-style
receiver through Apprise (run in a child process, as a worker does), and the
operator's mail server. The once-a-minute limit lives in the alert's row, so
it holds across workers (two apps here); the blueprint's clock is moved
instead of waiting.
"""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from balance_service.blueprints import alerts as alerts_blueprint
from balance_service.blueprints.alerts import TEST_BUSY_MESSAGE
from balance_service.usage.limit import SLOTS, usage_slots
from tests.alert_receivers import SCHEMES, TOPUP, channel_settings, created, free_port, http_receiver
from tests.test_alert_webhooks import expected_signature, running_receiver

URL = "/v1/user/balance/alerts"
USD = 500_000
NOW = 1_800_000_000


@pytest.fixture
def clock(monkeypatch):
    """The test button's clock, fixed at ``NOW`` until a test moves it (``clock.now += 60``)."""

    class Clock:
        now = NOW

    monkeypatch.setattr(alerts_blueprint, "clock", lambda: Clock.now)
    return Clock


@pytest.fixture
def receiver():
    with http_receiver() as state:
        yield state


@pytest.fixture
def app(make_app, mail_server):
    return make_app(**channel_settings(mail_server))


@pytest.fixture
def bob(create_user, create_token):
    owner = create_user(username="bob", quota=7 * USD)
    return owner, create_token(user_id=owner, name="laptop")


def press(app, key, alert_id):
    return app.test_client().post(f"{URL}/{alert_id}/test", headers={"Authorization": f"Bearer {key}"})


def test_the_test_button_sends_a_marked_message_to_an_ntfy_receiver(app, receiver, bob, clock):
    _, key = bob
    alert = created(app, key, notify_url=receiver.ntfy_url())
    response = press(app, key, alert["id"])
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"success": True, "delivered": True}
    [post] = receiver.posts
    assert post.json["title"] == "[Test] Balance alert"
    assert post.json["message"] == (
        'This is a test message: the balance alert of account "bob" reaches you here. '
        "It is sent when the balance falls below $5.00.\n"
        "Balance now: $7.00.\n"
        f"Top up: {TOPUP}"
    )
    [listed] = app.test_client().get(URL, headers={"Authorization": f"Bearer {key}"}).get_json()["alerts"]
    assert listed["last_tested_at"] == "2027-01-15T08:00:00Z"
    assert (listed["state"], listed["last_notified_at"]) == ("above", None), "a test is not a notification"


def test_the_test_message_is_in_the_alerts_language(app, receiver, bob, clock):
    _, key = bob
    alert = created(app, key, notify_url=receiver.json_url(), lang="zh-CN", scope="token", threshold=2)
    assert press(app, key, alert["id"]).status_code == 200
    [post] = receiver.posts
    assert post.json["title"] == "【测试】余额提醒"
    assert post.json["message"].startswith(
        "这是一条测试消息：令牌“laptop”的余额提醒会发送到这里。提醒条件：余额低于 $2.00。"
    )


@pytest.mark.parametrize(
    ("lang", "subject", "text"),
    [("en", "[Test] Balance alert", "This is a test message"), ("zh-CN", "【测试】余额提醒", "这是一条测试消息")],
)
def test_the_test_button_sends_an_email_through_the_operators_server(app, mail_server, bob, clock, lang, subject, text):
    _, key = bob
    alert = created(app, key, email="bob@example.org", lang=lang)
    assert press(app, key, alert["id"]).status_code == 200
    [mail] = mail_server.mails
    assert (mail.recipients, mail.subject) == (["bob@example.org"], subject)
    assert text in mail.text


def test_the_test_button_sends_a_signed_webhook_marked_as_a_test(app, bob, clock):
    _, key = bob
    with running_receiver() as hook:
        alert = created(app, key, webhook_url=hook.url)
        assert press(app, key, alert["id"]).status_code == 200
        [request] = hook.requests
    assert request.headers["x-balance-event"] == "balance.test"
    assert request.headers["x-balance-signature"] == expected_signature(alert["secret"], request)
    assert request.json["test"] is True
    assert request.json["event"] == "balance.test"
    assert request.json["timestamp"] == NOW


def test_a_second_press_within_a_minute_is_a_429_with_retry_after_even_on_another_worker(
    app, make_app, receiver, bob, clock
):
    _, key = bob
    alert = created(app, key, notify_url=receiver.ntfy_url())
    assert press(app, key, alert["id"]).status_code == 200
    clock.now += 45
    other_worker = make_app(ALERT_ALLOW_PRIVATE_TARGETS=True)  # same database
    refused = press(other_worker, key, alert["id"])
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "15"
    assert refused.get_json() == {"success": False, "message": "One test per alert per minute; try again in 15 s"}
    assert len(receiver.posts) == 1
    clock.now += 15
    assert press(other_worker, key, alert["id"]).status_code == 200
    assert len(receiver.posts) == 2


def test_a_failed_test_is_a_502_in_words_without_the_address(app, bob, clock):
    _, key = bob
    closed = free_port()
    alert = created(app, key, notify_url=f"ntfy://127.0.0.1:{closed}/secret-topic")
    response = press(app, key, alert["id"])
    assert response.status_code == 502
    message = response.get_json()["message"]
    assert message == "The test message was not delivered: ntfy did not accept the notification: the connection failed"
    for leak in ("127.0.0.1", str(closed), "secret-topic"):
        assert leak not in message


def test_a_test_to_an_address_no_longer_allowed_is_refused_at_send_time(app, make_app, receiver, bob, clock):
    _, key = bob
    alert = created(app, key, notify_url=receiver.ntfy_url())
    strict = make_app(ALERT_NOTIFY_SCHEMES=SCHEMES)  # same database, private targets no longer allowed
    response = press(strict, key, alert["id"])
    assert response.status_code == 502
    assert response.get_json()["message"] == (
        "The test message was not delivered: notify_url is not allowed: it must point to a public address"
    )
    assert receiver.posts == []


def test_another_keys_alert_cannot_be_tested(app, receiver, bob, create_token, clock):
    owner, key = bob
    alert = created(app, key, notify_url=receiver.ntfy_url())
    sibling = create_token(user_id=owner)
    for who, alert_id in ((sibling, alert["id"]), (key, alert["id"] + 1000), (key, 2**40)):
        response = press(app, who, alert_id)
        assert response.status_code == 404
        assert response.get_json() == {"success": False, "message": "No such alert"}
    assert receiver.posts == []


def test_when_the_host_is_busy_with_slow_work_a_press_answers_503_at_once_and_keeps_the_alerts_test(
    app, make_app, receiver, bob, clock
):
    """A send may wait 10-20 s on its target, so it takes one of the few slots the host has for slow work (usage
    queries hold the others), whichever worker takes the press; with none free it is refused at once, without
    using up the alert's test of this minute. A press that would wait for its minute anyway is told so (429)."""
    _, key = bob
    alert = created(app, key, notify_url=receiver.ntfy_url())
    other_worker = make_app(ALERT_ALLOW_PRIVATE_TARGETS=True, ALERT_NOTIFY_SCHEMES=SCHEMES)
    with app.app_context():
        slots = usage_slots()
    with ExitStack() as held:
        for _ in range(SLOTS):
            held.enter_context(slots.take())
        for worker in (app, other_worker):
            response = press(worker, key, alert["id"])
            assert response.status_code == 503
            assert response.headers["Retry-After"] == "1"
            assert response.get_json() == {"success": False, "message": TEST_BUSY_MESSAGE}
    assert receiver.posts == []
    response = press(other_worker, key, alert["id"])  # the same minute
    assert response.status_code == 200, response.get_json()
    assert len(receiver.posts) == 1
    with ExitStack() as held:
        for _ in range(SLOTS):
            held.enter_context(slots.take())
        response = press(app, key, alert["id"])
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "60"
