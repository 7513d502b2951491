"""An alert belongs to the key that created it: only that key lists and deletes it.

Webhook URLs often carry the receiver's own token, so another key of the same
account must not read them. An account-scoped alert still watches the whole
account's balance, whichever key created it. Alerts stored before the creator
was recorded stay manageable by the account's keys, without their URL.

What the creating key set up follows the key: once the gateway deletes it, its
alerts never notify again and the account's other keys may list (without the
URL) and delete them; while the gateway has it disabled, its alerts are paused
and stay private.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import delete, update

from balance_service.alerts.models import BalanceAlert
from balance_service.extensions import db as _db
from balance_service.gateway.tables import TOKEN_DISABLED, TOKEN_ENABLED, TOKEN_EXHAUSTED, TOKEN_EXPIRED, Token, User
from tests.helpers import recording_receiver
from tests.test_alert_webhooks import QUICK_RETRIES

URL = "/v1/user/balance/alerts"
HOOK = "http://127.0.0.1:9/hook?token=receiver-secret"
USD = 500_000


@pytest.fixture
def app(make_app):
    return make_app(ALERT_ALLOW_PRIVATE_TARGETS=True)


def create(client, auth, key, scope="account", url=HOOK, threshold=1):
    response = client.post(URL, json={"threshold": threshold, "webhook_url": url, "scope": scope}, headers=auth(key))
    assert response.status_code == 201, response.get_json()
    return response.get_json()["alert"]["id"]


def listed(client, auth, key):
    response = client.get(URL, headers=auth(key))
    assert response.status_code == 200
    return [(a["id"], a["webhook_url"]) for a in response.get_json()["alerts"]]


def token_id(app, key):
    with app.app_context():
        return _db.session.execute(_db.select(Token.id).where(Token.key == key[3:])).scalar_one()


def set_token(app, key, **values):
    """Change a key's row as the gateway's admin panel would."""
    with app.app_context():
        _db.session.execute(update(Token).where(Token.key == key[3:]).values(**values))
        _db.session.commit()


def set_quota(app, user_id, quota):
    with app.app_context():
        _db.session.execute(update(User).where(User.id == user_id).values(quota=quota))
        _db.session.commit()


def check(app):
    """``flask --app wsgi check-alerts``, as cron runs it; its summary line."""
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["check-alerts", *QUICK_RETRIES])
    assert result.exit_code == 0, result.output
    return result.output


def test_another_key_of_the_account_neither_sees_nor_deletes_an_alert(client, app, auth, create_user, create_token):
    owner = create_user()
    first, second = create_token(user_id=owner), create_token(user_id=owner)
    account_alert = create(client, auth, first)
    token_alert = create(client, auth, first, scope="token")
    theirs = create(client, auth, second)

    assert listed(client, auth, first) == [(account_alert, HOOK), (token_alert, HOOK)]
    assert listed(client, auth, second) == [(theirs, HOOK)]
    for alert_id in (account_alert, token_alert):
        refused = client.delete(f"{URL}/{alert_id}", headers=auth(second))
        assert (refused.status_code, refused.get_json()["message"]) == (404, "No such alert")
    with app.app_context():
        assert _db.session.execute(_db.select(_db.func.count()).select_from(BalanceAlert)).scalar_one() == 3
    assert client.delete(f"{URL}/{account_alert}", headers=auth(first)).status_code == 200
    assert listed(client, auth, first) == [(token_alert, HOOK)]


def test_the_creating_key_is_stored(client, app, auth, create_token):
    key = create_token()
    alert_id = create(client, auth, key)
    with app.app_context():
        assert _db.session.get(BalanceAlert, alert_id).created_by_token_id == token_id(app, key)


@pytest.mark.parametrize(
    "creator_now",
    [
        {"status": TOKEN_EXHAUSTED, "remain_quota": 0},
        {"status": TOKEN_EXPIRED},
        {"expired_time": 1_700_000_000},  # past, with the status still 1
    ],
    ids=["exhausted", "expired", "past-its-expiry-time"],
)
def test_an_account_alert_still_watches_the_whole_account_after_its_key_expired_or_ran_out(
    client, app, auth, create_user, create_token, creator_now
):
    """Expiring and running out happen to a key; its holder revoked nothing and can still list and delete."""
    owner = create_user(quota=10 * USD)
    creator = create_token(user_id=owner)
    with recording_receiver() as (hook, received):
        alert = create(client, auth, creator, url=hook, threshold=5)
        # Other keys (or the gateway) spend the account's credit; the creator's own credit plays no part.
        set_token(app, creator, **creator_now)
        set_quota(app, owner, 2 * USD)
        assert "1 notified" in check(app)
    assert [(body["scope"], body["user_id"]) for body in received] == [("account", owner)]
    assert listed(client, auth, creator) == [(alert, hook)]
    assert client.delete(f"{URL}/{alert}", headers=auth(creator)).status_code == 200


def test_alerts_stored_before_the_creator_was_recorded_stay_manageable_without_their_url(
    client, app, auth, create_user, create_token
):
    owner = create_user()
    first, second = create_token(user_id=owner), create_token(user_id=owner)
    with app.app_context():
        legacy = BalanceAlert(user_id=owner, token_id=None, threshold=1, webhook_url=HOOK, secret="s" * 64)
        _db.session.add(legacy)
        _db.session.commit()
        legacy_id = legacy.id
    for key in (first, second):
        assert listed(client, auth, key) == [(legacy_id, None)]
    assert client.delete(f"{URL}/{legacy_id}", headers=auth(second)).status_code == 200
    assert listed(client, auth, first) == []


def delete_key(app, key, how):
    """The gateway deletes a key: one-api removes the row, new-api sets ``deleted_at``."""
    with app.app_context():
        if how == "row removed":
            _db.session.execute(delete(Token).where(Token.key == key[3:]))
        else:
            _db.session.execute(update(Token).where(Token.key == key[3:]).values(deleted_at=datetime(2026, 1, 1)))
        _db.session.commit()


@pytest.mark.parametrize("how", ["row removed", "soft-deleted"])
def test_alerts_of_a_deleted_key_never_notify_again(client, app, auth, create_user, create_token, how):
    owner = create_user(quota=10 * USD)
    gone, other = create_token(user_id=owner), create_token(user_id=owner)
    with recording_receiver() as (hook, received):
        create(client, auth, gone, url=hook, threshold=5)
        create(client, auth, gone, scope="token", url=hook, threshold=5)
        theirs = create(client, auth, other, url=hook, threshold=5)
        delete_key(app, gone, how)
        set_quota(app, owner, 2 * USD)
        summary = check(app)
    assert [body["alert_id"] for body in received] == [theirs]
    assert "2 skipped" in summary and "2 created by a key since deleted" in summary, summary


@pytest.mark.parametrize("how", ["row removed", "soft-deleted"])
def test_the_accounts_other_keys_list_and_delete_the_alerts_of_a_deleted_key(
    client, app, auth, create_user, create_token, how
):
    owner = create_user()
    gone, other = create_token(user_id=owner), create_token(user_id=owner)
    account_alert = create(client, auth, gone)
    token_alert = create(client, auth, gone, scope="token")
    theirs = create(client, auth, other)
    stranger = create_token()  # a key of another account
    delete_key(app, gone, how)
    # The URL may carry the receiver's token: other keys see the alerts without it; their own keep theirs.
    assert listed(client, auth, other) == [(account_alert, None), (token_alert, None), (theirs, HOOK)]
    assert listed(client, auth, stranger) == []
    assert client.delete(f"{URL}/{account_alert}", headers=auth(stranger)).status_code == 404
    for alert_id in (account_alert, token_alert):
        assert client.delete(f"{URL}/{alert_id}", headers=auth(other)).status_code == 200
    assert listed(client, auth, other) == [(theirs, HOOK)]


def test_an_alert_of_a_disabled_key_is_paused_and_private_until_the_gateway_enables_the_key_again(
    client, app, auth, create_user, create_token
):
    owner = create_user(quota=10 * USD)
    creator, other = create_token(user_id=owner), create_token(user_id=owner)
    with recording_receiver() as (hook, received):
        alert = create(client, auth, creator, url=hook, threshold=5)
        set_token(app, creator, status=TOKEN_DISABLED)
        set_quota(app, owner, 2 * USD)
        summary = check(app)
        assert received == []
        assert "1 skipped" in summary and "1 by a key now disabled" in summary, summary
        # The key may come back: its alert is not handed to the account's other keys.
        assert listed(client, auth, other) == []
        assert client.delete(f"{URL}/{alert}", headers=auth(other)).status_code == 404

        set_token(app, creator, status=TOKEN_ENABLED)
        assert "1 notified" in check(app)
        assert [body["alert_id"] for body in received] == [alert]
        # From then on as usual: rising re-arms, the next fall notifies again.
        set_quota(app, owner, 10 * USD)
        assert "1 re-armed" in check(app)
        set_quota(app, owner, USD)
        assert "1 notified" in check(app)
    assert [body["balance"] for body in received] == [2, 1]
    assert listed(client, auth, creator) == [(alert, hook)]


def test_an_alert_stored_before_the_creator_was_recorded_still_notifies(app, create_user, create_token):
    owner = create_user(quota=0)
    create_token(user_id=owner)
    with recording_receiver() as (hook, received):
        with app.app_context():
            legacy = BalanceAlert(user_id=owner, token_id=None, threshold=USD, webhook_url=hook, secret="s" * 64)
            _db.session.add(legacy)
            _db.session.commit()
            legacy_id = legacy.id
        assert "1 notified" in check(app)
    assert [body["alert_id"] for body in received] == [legacy_id]
