"""Alerts to chat, push and e-mail through the real Apprise package, to real receivers on loopback.

An ntfy-style and an Apprise JSON receiver (``tests/alert_receivers.py``), with
private targets allowed as an operator would for an internal receiver, and an
aiosmtpd server as the operator's mail server (ALERT_SMTP_URL). The address
policy holds for Apprise's own connections: names resolving to loopback or to
the metadata address 169.254.169.254 are refused at creation and at send time,
after a redirect too. No test sends anything off this machine.
"""

from __future__ import annotations

import socket
import time

import pytest
from sqlalchemy import select, update

from balance_service.alerts.models import BalanceAlert
from balance_service.config import NOTIFY_SCHEMES, ConfigError, Settings
from balance_service.extensions import db as _db
from tests.alert_receivers import (
    SCHEMES,
    TOPUP,
    channel_settings,
    create,
    created,
    free_port,
    http_receiver,
    recording_proxy,
)
from tests.gateway_logs import CONSUME, Log
from tests.helpers import last_line_printed
from tests.test_forecast_alerts import days_ago

URL = "/v1/user/balance/alerts"
USD = 500_000  # quota units per dollar
BOT = "tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/987654321"


@pytest.fixture
def receiver():
    with http_receiver() as state:
        yield state


@pytest.fixture
def app(make_app, mail_server):
    return make_app(**channel_settings(mail_server))


def listed(app, key):
    response = app.test_client().get(URL, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    return response


def set_quota(app, user_id, quota):
    with app.app_context():
        from balance_service.gateway.tables import User

        _db.session.execute(update(User).where(User.id == user_id).values(quota=quota))
        _db.session.commit()


def check(app, *options):
    with app.app_context():
        return app.test_cli_runner().invoke(
            args=["check-alerts", "--retry-backoff", "0.01", "--timeout", "2", *options]
        )


def stored(app):
    with app.app_context():
        return list(_db.session.execute(select(BalanceAlert)).scalars())


@pytest.fixture
def alice(create_user, create_token):
    """An account named alice with 10 USD, and its key named ci-key: ``(user id, key)``."""
    owner = create_user(username="alice", quota=10 * USD)
    return owner, create_token(user_id=owner, name="ci-key")


def test_an_ntfy_alert_tells_in_english_the_balance_threshold_account_and_top_up_link(app, receiver, alice):
    owner, key = alice
    alert = created(app, key, notify_url=receiver.ntfy_url(topic="balance-alice"))
    assert (alert["channel"], alert["lang"], alert["webhook_url"]) == ("notify", "en", None)
    assert check(app).exit_code == 0
    assert receiver.posts == [], "10 USD is not below 5"

    set_quota(app, owner, 2 * USD)
    result = check(app)
    assert result.exit_code == 0, result.output
    assert "1 notified" in result.output
    [post] = receiver.posts
    assert post.json["topic"] == "balance-alice"
    assert post.json["title"] == "Balance below $5.00: $2.00 left"
    assert post.json["message"] == (
        f'The balance of account "alice" is $2.00, below the alert threshold of $5.00.\nTop up: {TOPUP}'
    )
    assert check(app).exit_code == 0
    assert len(receiver.posts) == 1, "once per crossing"


def test_a_json_alert_speaks_chinese_when_the_creating_request_asked_for_it(app, receiver, alice, create_token):
    owner, _ = alice
    key = create_token(user_id=owner, name="部署密钥", remain_quota=USD // 2)
    alert = created(
        app, key, {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}, notify_url=receiver.json_url(), scope="token"
    )
    assert alert["lang"] == "zh-CN"
    assert check(app).exit_code == 0
    [post] = receiver.posts
    assert post.path == "/alerts/in"
    assert post.json["title"] == "余额低于 $5.00：剩余 $0.50"
    assert post.json["message"] == f"令牌“部署密钥”的余额为 $0.50，已低于提醒阈值 $5.00。\n充值：{TOPUP}"
    assert key not in str(post.json) and key[3:] not in str(post.json)


@pytest.mark.parametrize(
    ("lang", "subject", "text"),
    [
        ("en", "Balance below $5.00: $1.25 left", 'The balance of account "alice" is $1.25'),
        ("zh-CN", "余额低于 $5.00：剩余 $1.25", "账户“alice”的余额为 $1.25，已低于提醒阈值 $5.00。"),
    ],
)
def test_an_email_alert_goes_through_the_operators_mail_server_in_its_language(
    app, mail_server, alice, lang, subject, text
):
    owner, key = alice
    alert = created(app, key, email="alice@example.org", lang=lang)
    assert (alert["channel"], alert["email"], alert["lang"]) == ("email", "a****@example.org", lang)
    set_quota(app, owner, USD + USD // 4)
    result = check(app)
    assert result.exit_code == 0, result.output
    [mail] = mail_server.mails
    assert (mail.sender, mail.recipients) == ("alerts@example.com", ["alice@example.org"])
    assert mail.subject == subject
    assert text in mail.text
    assert TOPUP in mail.text


def test_a_name_written_like_markup_reaches_the_mail_as_text_never_as_a_link(
    app, mail_server, create_user, create_token
):
    """A key holder chooses the key's name; the operator's mail server must not send it as HTML of theirs."""
    owner = create_user(username="mallory", quota=0)
    name = '<a href="https://evil.example/pay">Top up here</a> & co'
    key = create_token(user_id=owner, name=name)
    created(app, key, email="mallory@example.org", scope="token", threshold=1)
    assert check(app).exit_code == 0
    [mail] = mail_server.mails
    assert name in mail.text
    assert mail.html is None or ('href="https://evil.example' not in mail.html and "&lt;a href=" in mail.html)


def test_a_proxy_in_the_environment_is_not_used_so_the_guard_judges_the_real_target(app, receiver, alice, monkeypatch):
    """Through a proxy the guard would see only the proxy's address; alert sends connect themselves."""
    with recording_proxy() as proxy:
        for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, proxy.url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        owner, key = alice
        created(app, key, notify_url=receiver.ntfy_url(topic="balance-alice"))
        set_quota(app, owner, 2 * USD)
        assert check(app).exit_code == 0
        assert len(receiver.posts) == 1
        assert proxy.requests == []


def test_a_forecast_alert_message_gives_the_days_left(app, receiver, alice, gateway_tables):
    owner, key = alice
    spent = [Log(owner, days_ago(n), CONSUME, USD, "gpt-4o", "ci-key") for n in range(1, 8)]  # 1 USD a day
    gateway_tables().create_logs("new-api").add(spent)
    created(app, key, notify_url=receiver.json_url(), threshold=None, days_left=14)
    assert check(app).exit_code == 0
    [post] = receiver.posts
    assert post.json["title"] == "Balance runs out in about 10 days"
    assert post.json["message"].startswith(
        'At the spend of the last 7 days, the balance of account "alice" ($10.00) lasts about 10 more days, '
        "fewer than the 14 days this alert watches for."
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"webhook_url": "http://127.0.0.1:9/", "email": "a@example.org"}, "exactly one of webhook_url"),
        ({"notify_url": BOT, "email": "a@example.org"}, "exactly one of webhook_url"),
        ({"notify_url": "syslog://"}, "notify_url: the scheme 'syslog' is not allowed"),
        ({"notify_url": "file:///etc/passwd"}, "notify_url: the scheme 'file' is not allowed"),
        ({"notify_url": "windows://"}, "notify_url: the scheme 'windows' is not allowed"),
        ({"notify_url": "mailto://user:pass@smtp.example.org"}, "e-mail alerts take an email field instead"),
        ({"notify_url": "gopher://x/y"}, "notify_url: the scheme 'gopher' is not allowed"),
        ({"notify_url": "tgram://not-a-bot-token"}, "notify_url is not a valid Telegram URL"),
        ({"notify_url": "just text"}, "notify_url must be plain ASCII without spaces"),
        ({"notify_url": "ntfy"}, "notify_url is not an Apprise URL"),
        ({"notify_url": "ntfys://"}, "notify_url has nothing after ntfys://"),
        ({"notify_url": 42}, "notify_url must be a string"),
        ({"email": "not an address"}, "email must be one e-mail address"),
        ({"email": "a@b"}, "email must be one e-mail address"),
        ({"notify_url": BOT, "lang": "fr"}, "lang must be one of en, zh-CN"),
    ],
)
def test_a_bad_channel_is_a_400_naming_the_field_and_stores_nothing(app, alice, fields, message):
    _, key = alice
    response = create(app, key, **fields)
    assert response.status_code == 400, response.get_json()
    assert message in response.get_json()["message"]
    assert stored(app) == []


def test_email_alerts_are_refused_while_the_operator_has_no_mail_server(make_app, alice):
    app = make_app()
    response = create(app, alice[1], email="alice@example.org")
    assert response.status_code == 400
    assert "ALERT_SMTP_URL" in response.get_json()["message"]
    assert stored(app) == []


def test_a_scheme_the_operator_did_not_allow_is_refused(make_app, alice):
    app = make_app(ALERT_NOTIFY_SCHEMES="ntfys")
    response = create(app, alice[1], notify_url=BOT)
    assert response.status_code == 400
    assert response.get_json()["message"] == (
        "notify_url: the scheme 'tgram' is not allowed on this server (allowed: ntfys)"
    )


@pytest.mark.parametrize("value", ["syslog", "mailto", "mailtos", "dbus", "file", "gnome", "tgram,nonsense"])
def test_alert_notify_schemes_takes_only_the_chat_and_push_services(value):
    with pytest.raises(ConfigError, match="ALERT_NOTIFY_SCHEMES"):
        Settings.from_env({"ALERT_NOTIFY_SCHEMES": value})


def test_the_scheme_table_names_the_plugin_apprise_itself_uses_for_each_scheme():
    from apprise.plugins import N_MGR

    for scheme, entry in NOTIFY_SCHEMES.items():
        assert N_MGR[scheme].__module__ == f"apprise.plugins.{entry.plugin}", scheme


def test_listings_mask_tokens_keys_and_passwords(app, alice):
    _, key = alice
    created(app, key, notify_url=BOT)
    created(app, key, notify_url="ntfys://bob:s3cret@localhost:8443/private-topic")
    created(app, key, email="alice@example.org")
    response = listed(app, key)
    shown = [(a["channel"], a["notify_url"], a["email"]) for a in response.get_json()["alerts"]]
    assert shown == [
        ("notify", "tgram://****", None),
        ("notify", "ntfys://****@localhost:8443/****", None),
        ("email", None, "a****@example.org"),
    ]
    text = response.get_data(as_text=True)
    for secret in ("AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", "s3cret", "private-topic", "alice@example.org"):
        assert secret not in text


@pytest.fixture
def resolver(monkeypatch):
    """Test names and what they resolve to, answered before the offline resolver of tests/conftest.py."""
    answers: dict[str, str] = {}
    offline = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if isinstance(host, str) and host in answers:
            return offline(answers[host], port, *args, **kwargs)
        return offline(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


@pytest.mark.parametrize("host", ["169.254.169.254", "metadata.test"])
def test_a_host_at_the_metadata_address_is_refused_at_creation_even_with_private_targets(app, alice, resolver, host):
    resolver["metadata.test"] = "169.254.169.254"
    for url in (f"ntfy://{host}/topic", f"json://{host}:8080/x", f"gotifys://{host}/token"):
        response = create(app, alice[1], notify_url=url)
        assert response.status_code == 400, url
        assert response.get_json()["message"].startswith("notify_url is not allowed"), url
        assert "169.254" not in response.get_json()["message"].replace(host, "")
    assert stored(app) == []


def test_a_loopback_host_is_refused_at_creation_without_private_targets(make_app, alice, receiver):
    app = make_app(ALERT_NOTIFY_SCHEMES=SCHEMES)
    for url in (receiver.ntfy_url(host="localhost"), receiver.json_url(host="127.0.0.1")):
        response = create(app, alice[1], notify_url=url)
        assert response.status_code == 400
        assert response.get_json()["message"] == "notify_url is not allowed: it must point to a public address"
    assert stored(app) == []


def test_a_host_that_became_loopback_is_not_called_at_send_time(app, make_app, alice, receiver):
    owner, key = alice
    created(app, key, notify_url=receiver.ntfy_url(host="localhost"))
    set_quota(app, owner, 0)
    strict = make_app(ALERT_NOTIFY_SCHEMES=SCHEMES)  # same database, private targets no longer allowed
    result = check(strict)
    assert result.exit_code == 1
    assert "1 failed" in result.output
    assert receiver.posts == []
    [alert] = listed(app, key).get_json()["alerts"]
    assert alert["last_error"] == "notify_url is not allowed: it must point to a public address"
    assert alert["state"] == "above"


def test_a_name_rebound_to_the_metadata_address_is_not_called_at_send_time(app, alice, receiver, resolver):
    owner, key = alice
    resolver["rebind.test"] = "127.0.0.1"
    created(app, key, notify_url=receiver.json_url(host="rebind.test"))
    resolver["rebind.test"] = "169.254.169.254"
    set_quota(app, owner, 0)
    result = check(app)
    assert result.exit_code == 1
    assert receiver.posts == []
    [alert] = listed(app, key).get_json()["alerts"]
    assert alert["last_error"].startswith("notify_url is not allowed")


def test_a_redirect_to_the_metadata_address_is_not_followed(app, alice, receiver):
    owner, key = alice
    created(app, key, notify_url=receiver.json_url())
    receiver.redirect = f"http://169.254.169.254:{receiver.port}/latest/meta-data/"
    set_quota(app, owner, 0)
    result = check(app, "--attempts", "1")
    assert result.exit_code == 1
    assert len(receiver.posts) == 1, "the first request reached the receiver; the redirect went nowhere"
    [alert] = listed(app, key).get_json()["alerts"]
    assert alert["last_error"].startswith("notify_url is not allowed")


def test_a_receiver_that_never_answers_is_cut_off_at_the_deadline_and_retried_later(app, alice, receiver):
    owner, key = alice
    created(app, key, notify_url=receiver.ntfy_url())
    receiver.delay = 3
    set_quota(app, owner, 0)
    started = time.monotonic()
    result = check(app, "--deadline", "1", "--timeout", "10")
    assert time.monotonic() - started < 2.5
    assert result.exit_code == 1
    assert "0 notified, 1 failed" in result.output
    with app.app_context():
        [row] = stored(app)
    assert (row.state, row.failures) == ("above", 1)
    assert row.next_attempt_at is not None, "held back before the next try"


def test_a_failed_notification_says_why_without_the_url_or_token(app, alice, receiver):
    owner, key = alice
    created(app, key, notify_url=receiver.ntfy_url(topic="secret-topic-xyz"))
    receiver.status = 403
    set_quota(app, owner, 0)
    result = check(app, "--attempts", "2")
    assert result.exit_code == 1
    [alert] = listed(app, key).get_json()["alerts"]
    assert alert["last_error"] == "ntfy did not accept the notification: it answered HTTP 403 Forbidden"
    for leak in ("secret-topic-xyz", str(receiver.port), "127.0.0.1"):
        assert leak not in alert["last_error"]
        assert leak not in result.output
    assert len(receiver.posts) == 2, "retried like a webhook"


def test_an_unreachable_mail_server_fails_the_delivery(make_app, alice):
    app = make_app(ALERT_SMTP_URL=f"mailto://127.0.0.1:{free_port()}?from=alerts@example.com&mode=insecure")
    owner, key = alice
    created(app, key, email="alice@example.org")
    set_quota(app, owner, 0)
    result = check(app, "--attempts", "1")
    assert result.exit_code == 1
    assert listed(app, key).get_json()["alerts"][0]["last_error"].startswith("E-Mail did not accept")


@pytest.mark.backend_independent
def test_a_serving_worker_never_loads_apprise(app, alice, receiver, database_url):
    """Apprise costs a process ~8.5 MB; a worker has under 1 MB to spare, so it checks and sends in a child."""
    _, key = alice
    script = (
        "import sys\n"
        "from balance_service import create_app\n"
        f"app = create_app({{'DATABASE_URL': {database_url!r}, 'ALERT_ALLOW_PRIVATE_TARGETS': True}})\n"
        "client = app.test_client()\n"
        f"headers = {{'Authorization': 'Bearer {key}'}}\n"
        f"alert = {{'threshold': 1, 'notify_url': {receiver.ntfy_url()!r}}}\n"
        f"made = client.post({URL!r}, json=alert, headers=headers)\n"
        'tested = client.post(f"' + URL + "/{made.get_json()['alert']['id']}/test\", headers=headers)\n"
        f"listed = client.get({URL!r}, headers=headers)\n"
        "balance = client.get('/v1/user/balance', headers=headers)\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in ('apprise', 'requests')})\n"
        "print(made.status_code, tested.status_code, listed.status_code, balance.status_code, loaded)\n"
    )
    assert last_line_printed(script) == "201 200 200 200 []"
    assert [post.json["title"] for post in receiver.posts] == ["[Test] Balance alert"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ALERT_SMTP_URL": "smtp://user:hunter2@mail.example.com"}, "ALERT_SMTP_URL must be an Apprise mailto://"),
        ({"ALERT_SMTP_URL": "mailtos://"}, "ALERT_SMTP_URL must be an Apprise mailto://"),
        ({"ALERT_TOPUP_URL": "http://gateway.example.com/topup"}, "ALERT_TOPUP_URL must be an https:// URL"),
        ({"ALERT_TOPUP_URL": "https:///topup"}, "ALERT_TOPUP_URL must be an https:// URL"),
    ],
)
def test_the_mail_server_and_top_up_link_settings_are_checked_at_start_up(env, message):
    with pytest.raises(ConfigError, match=message) as refused:
        Settings.from_env(env)
    assert "hunter2" not in str(refused.value)


def test_the_mail_servers_password_is_left_out_of_the_settings_repr():
    parsed = Settings.from_env({"ALERT_SMTP_URL": "mailtos://alerts:hunter2@mail.example.com?from=a@example.com"})
    assert parsed.alert_smtp_url.startswith("mailtos://")
    assert "hunter2" not in repr(parsed)
