"""Key holders create, list and delete balance alerts; bad input is refused and changes nothing."""

from __future__ import annotations

import re
import socket
import threading
import time
from contextlib import suppress
from decimal import Decimal

import pytest
from sqlalchemy import event

from balance_service import create_app
from balance_service.alerts import store
from balance_service.alerts.models import BalanceAlert
from balance_service.config import Settings
from balance_service.extensions import db as _db
from balance_service.gateway.tables import Token, User
from balance_service.migrations import init_database
from tests.helpers import run_concurrently, temporary_mariadb_database

URL = "/v1/user/balance/alerts"
# Loopback targets need ALERT_ALLOW_PRIVATE_TARGETS; nothing is sent to them in this file.
HOOK = "http://127.0.0.1:9/hook"


@pytest.fixture
def app(make_app):
    return make_app(ALERT_ALLOW_PRIVATE_TARGETS=True)


def stored_alerts(app) -> list[BalanceAlert]:
    with app.app_context():
        return list(_db.session.execute(_db.select(BalanceAlert).order_by(BalanceAlert.id)).scalars())


def token_id_of(app, key: str) -> int:
    with app.app_context():
        return _db.session.execute(_db.select(Token.id).where(Token.key == key[3:])).scalar_one()


def test_creating_an_account_alert_returns_it_with_its_secret(client, app, auth, create_token):
    key = create_token()
    response = client.post(URL, json={"threshold": 5, "webhook_url": HOOK}, headers=auth(key))
    assert response.status_code == 201
    alert = response.get_json()["alert"]
    assert response.get_json()["success"] is True
    assert alert["scope"] == "account"
    assert alert["token_id"] is None
    assert alert["threshold"] == Decimal(5)
    assert alert["unit"] == "USD"
    assert alert["webhook_url"] == HOOK
    assert alert["state"] == "above"
    assert re.fullmatch(r"[0-9a-f]{64}", alert["secret"])
    [row] = stored_alerts(app)
    assert (row.id, row.threshold, row.token_id, row.secret) == (alert["id"], 2_500_000, None, alert["secret"])


def test_the_secret_is_never_shown_again(client, auth, create_token):
    key = create_token()
    secret = client.post(URL, json={"threshold": 1, "webhook_url": HOOK}, headers=auth(key)).get_json()["alert"][
        "secret"
    ]
    response = client.get(URL, headers=auth(key))
    assert response.status_code == 200
    [listed] = response.get_json()["alerts"]
    assert "secret" not in listed
    assert secret not in response.get_data(as_text=True)


def test_a_token_alert_watches_the_key_that_made_the_request(client, app, auth, create_user, create_token):
    owner = create_user()
    create_token(user_id=owner)
    key = create_token(user_id=owner)
    body = {"threshold": Decimal("0.5"), "webhook_url": HOOK, "scope": "token"}
    alert = client.post(URL, json=body, headers=auth(key)).get_json()["alert"]
    assert alert["scope"] == "token"
    assert alert["token_id"] == token_id_of(app, key)
    assert stored_alerts(app)[0].threshold == 250_000


@pytest.mark.parametrize(
    ("unit", "threshold", "quota"),
    [("USD", "0.000001", 1), ("CNY", "7.3", 500_000), ("CNY", "1", 68_493), ("tokens", "1234", 1234)],
)
def test_the_threshold_is_read_in_the_configured_unit(make_app, create_token, auth, unit, threshold, quota):
    app = make_app(ALERT_ALLOW_PRIVATE_TARGETS=True, BALANCE_UNIT=unit)
    key = create_token()
    response = app.test_client().post(
        URL,
        data=f'{{"threshold": {threshold}, "webhook_url": "{HOOK}"}}',
        content_type="application/json",
        headers=auth(key),
    )
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["alert"]["unit"] == unit
    assert stored_alerts(app)[0].threshold == quota


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("not json", "JSON object"),
        ("[1, 2]", "JSON object"),
        ('{"webhook_url": "http://127.0.0.1/"}', "threshold or days_left is required"),
        ('{"threshold": "5", "webhook_url": "http://127.0.0.1/"}', "threshold must be a JSON number"),
        ('{"threshold": true, "webhook_url": "http://127.0.0.1/"}', "threshold must be a JSON number"),
        ('{"threshold": -1, "webhook_url": "http://127.0.0.1/"}', "non-negative"),
        ('{"threshold": -0.000001, "webhook_url": "http://127.0.0.1/"}', "non-negative"),
        ('{"threshold": 1e400, "webhook_url": "http://127.0.0.1/"}', "too large"),
        ('{"threshold": 18446744073709551615, "webhook_url": "http://127.0.0.1/"}', "too large"),
        ('{"threshold": 1, "webhook_url": "http://127.0.0.1/", "extra": 1}', "Unknown field(s): extra"),
        ('{"threshold": 1, "webhook_url": "http://127.0.0.1/", "scope": "team"}', "scope must be"),
        ('{"threshold": 1}', "Give exactly one of webhook_url, notify_url (an Apprise URL) and email"),
        ('{"threshold": 1, "webhook_url": "ftp://127.0.0.1/"}', "http:// or https://"),
        ('{"threshold": 1, "webhook_url": "http://host.invalid/"}', "cannot resolve"),
    ],
)
def test_bad_input_is_refused_with_400_and_changes_nothing(client, app, auth, create_token, data, message):
    key = create_token()
    response = client.post(URL, data=data, content_type="application/json", headers=auth(key))
    assert response.status_code == 400
    body = response.get_json()
    assert body["success"] is False
    assert message in body["message"]
    assert stored_alerts(app) == []


def test_a_fractional_threshold_in_tokens_is_refused(make_app, create_token, auth):
    app = make_app(ALERT_ALLOW_PRIVATE_TARGETS=True, BALANCE_UNIT="tokens")
    response = app.test_client().post(
        URL, json={"threshold": Decimal("1.5"), "webhook_url": HOOK}, headers=auth(create_token())
    )
    assert response.status_code == 400
    assert "whole number" in response.get_json()["message"]


def test_a_body_sent_without_json_content_type_is_refused(client, app, auth, create_token):
    response = client.post(
        URL, data='{"threshold": 1, "webhook_url": "http://127.0.0.1/"}', headers=auth(create_token())
    )
    assert response.status_code == 400
    assert "Content-Type: application/json" in response.get_json()["message"]
    assert stored_alerts(app) == []


# The full address matrix is tested on the policy itself (tests/test_alert_targets.py);
# these requests prove that the endpoint applies it, with and without the setting.
def test_a_loopback_target_is_refused_by_default(make_app, create_token, auth):
    app = make_app()
    response = app.test_client().post(
        URL, json={"threshold": 1, "webhook_url": "http://127.0.0.1/hook"}, headers=auth(create_token())
    )
    assert response.status_code == 400
    assert "must point to a public address" in response.get_json()["message"]
    assert stored_alerts(app) == []


@pytest.mark.parametrize(
    "webhook_url", ["http://169.254.169.254/latest/meta-data/", "http://[::ffff:169.254.169.254]/hook"]
)
def test_the_metadata_endpoint_stays_refused_when_private_targets_are_allowed(
    client, app, auth, create_token, webhook_url
):
    response = client.post(URL, json={"threshold": 1, "webhook_url": webhook_url}, headers=auth(create_token()))
    assert response.status_code == 400
    assert "must point to a public address" in response.get_json()["message"]
    assert stored_alerts(app) == []


@pytest.mark.parametrize("webhook_url", ["http://10.1.2.3/hook", "https://localhost:8443/hook"])
def test_a_private_network_or_loopback_target_is_accepted_when_private_targets_are_allowed(
    client, app, auth, create_token, webhook_url
):
    response = client.post(URL, json={"threshold": 1, "webhook_url": webhook_url}, headers=auth(create_token()))
    assert response.status_code == 201, response.get_json()
    assert [a.webhook_url for a in stored_alerts(app)] == [webhook_url]


def test_a_public_address_is_accepted_by_default(make_app, create_token, auth):
    app = make_app()
    key = create_token()
    response = app.test_client().post(
        URL, json={"threshold": 1, "webhook_url": "https://1.1.1.1/hook"}, headers=auth(key)
    )
    assert response.status_code == 201


def test_an_account_can_hold_only_twenty_alerts(make_app, create_user, create_token, auth):
    app = make_app(ALERT_ALLOW_PRIVATE_TARGETS=True)
    client = app.test_client()
    owner = create_user()
    first, second = create_token(user_id=owner), create_token(user_id=owner)
    for index in range(store.MAX_ALERTS_PER_USER):
        key = (first, second)[index % 2]
        assert client.post(URL, json={"threshold": 1, "webhook_url": HOOK}, headers=auth(key)).status_code == 201
    refused = client.post(URL, json={"threshold": 1, "webhook_url": HOOK, "scope": "token"}, headers=auth(first))
    assert refused.status_code == 409
    assert "at most 20" in refused.get_json()["message"]
    assert len(stored_alerts(app)) == 20
    other = client.post(URL, json={"threshold": 1, "webhook_url": HOOK}, headers=auth(create_token()))
    assert other.status_code == 201


def test_the_webhook_host_is_resolved_before_any_database_transaction(
    client, app, auth, create_token, count_statements, monkeypatch
):
    """A slow resolver must not keep a database connection idle in a transaction."""
    resolve = socket.getaddrinfo
    in_transaction = []

    def watched_getaddrinfo(host, *args, **kwargs):
        if host == "localhost":  # the webhook's host; a database driver may resolve its own server too
            in_transaction.append(_db.session().in_transaction())
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", watched_getaddrinfo)
    key = create_token()
    created = client.post(URL, json={"threshold": 1, "webhook_url": "http://localhost/hook"}, headers=auth(key))
    assert created.status_code == 201
    assert in_transaction == [False]
    with count_statements() as statements:
        refused = client.post(URL, json={"threshold": 1, "webhook_url": "http://host.invalid/"}, headers=auth(key))
    assert refused.status_code == 400
    assert len(statements) == 1, statements  # the key lookup only; nothing of the alerts table


def test_concurrent_creations_cannot_exceed_the_per_account_cap(backend, make_app, create_user, create_token, auth):
    """Two POSTs that both pass the cap check at the same moment: only one may be stored."""
    app = make_app(ALERT_ALLOW_PRIVATE_TARGETS=True)
    owner = create_user()
    keys = [create_token(user_id=owner) for _ in range(3)]
    for _ in range(store.MAX_ALERTS_PER_USER - 1):
        created = app.test_client().post(URL, json={"threshold": 1, "webhook_url": HOOK}, headers=auth(keys[0]))
        assert created.status_code == 201
    both_inserting = threading.Barrier(2)

    def meet_at_the_insert(conn, cursor, statement, *args):
        if statement.startswith("INSERT INTO balance_alerts"):
            # Times out when the other request is (rightly) made to wait for this one's commit.
            with suppress(threading.BrokenBarrierError):
                both_inserting.wait(timeout=1)

    with app.app_context():
        engine = _db.engine
    event.listen(engine, "before_cursor_execute", meet_at_the_insert)
    statuses = []

    def post(key):
        response = app.test_client().post(URL, json={"threshold": 1, "webhook_url": HOOK}, headers=auth(key))
        statuses.append(response.status_code)

    try:
        run_concurrently([lambda key=key: post(key) for key in keys[1:]])
    finally:
        event.remove(engine, "before_cursor_execute", meet_at_the_insert)
    assert sorted(statuses) == [201, 409]
    assert len(stored_alerts(app)) == store.MAX_ALERTS_PER_USER


def test_alert_creations_in_two_databases_of_one_mariadb_server_do_not_wait_for_each_other(mariadb_url, auth):
    """GET_LOCK names are global to the server: the database name in them keeps two services' accounts apart."""
    with temporary_mariadb_database() as other_url:
        first, second = (
            create_app({"TESTING": True, "DATABASE_URL": url, "ALERT_ALLOW_PRIVATE_TARGETS": True})
            for url in (mariadb_url, other_url)
        )
        try:
            with second.app_context():
                init_database(_db.engine)
                user = User(username="same-id-elsewhere")
                _db.session.add(user)
                _db.session.commit()
                user_id = user.id
                _db.session.add(Token(user_id=user_id, key="k" * 48, created_time=int(time.time())))
                _db.session.commit()
            # The first database's service is storing an alert for its account with the same id.
            with first.app_context(), store.account_lock(user_id):
                started = time.monotonic()
                body = {"threshold": 1, "webhook_url": HOOK}
                response = second.test_client().post(URL, json=body, headers=auth("sk-" + "k" * 48))
                waited = time.monotonic() - started
            assert response.status_code == 201, response.get_json()
            assert waited < 5
        finally:
            for app in (first, second):
                with app.app_context():
                    _db.engine.dispose()


def test_the_list_holds_the_keys_own_alerts_and_no_one_elses(client, auth, create_user, create_token):
    owner = create_user()
    key, sibling = create_token(user_id=owner), create_token(user_id=owner)
    stranger = create_token()
    mine = client.post(URL, json={"threshold": 1, "webhook_url": HOOK}, headers=auth(key)).get_json()["alert"]["id"]
    client.post(URL, json={"threshold": 2, "webhook_url": HOOK}, headers=auth(stranger))
    assert [a["id"] for a in client.get(URL, headers=auth(key)).get_json()["alerts"]] == [mine]
    # Another key of the same account does not see it (test_alert_ownership.py).
    assert client.get(URL, headers=auth(sibling)).get_json()["alerts"] == []


def test_an_owner_deletes_an_alert(client, app, auth, create_token):
    key = create_token()
    alert_id = client.post(URL, json={"threshold": 1, "webhook_url": HOOK}, headers=auth(key)).get_json()["alert"]["id"]
    response = client.delete(f"{URL}/{alert_id}", headers=auth(key))
    assert response.status_code == 200
    assert response.get_json() == {"success": True, "deleted": alert_id}
    assert stored_alerts(app) == []
    assert client.delete(f"{URL}/{alert_id}", headers=auth(key)).status_code == 404


def test_someone_elses_alert_cannot_be_deleted_and_looks_missing(client, app, auth, create_token):
    owner_key, stranger = create_token(), create_token()
    alert_id = client.post(URL, json={"threshold": 1, "webhook_url": HOOK}, headers=auth(owner_key)).get_json()[
        "alert"
    ]["id"]
    theirs = client.delete(f"{URL}/{alert_id}", headers=auth(stranger))
    missing = client.delete(f"{URL}/{alert_id + 1000}", headers=auth(stranger))
    assert theirs.status_code == missing.status_code == 404
    assert theirs.get_json() == missing.get_json() == {"success": False, "message": "No such alert"}
    assert [a.id for a in stored_alerts(app)] == [alert_id]


@pytest.mark.parametrize("alert_id", [str(2**40), "abc", "-1"])
def test_impossible_alert_ids_are_a_json_404(client, auth, create_token, alert_id):
    response = client.delete(f"{URL}/{alert_id}", headers=auth(create_token()))
    assert response.status_code == 404
    assert response.get_json()["success"] is False


@pytest.mark.parametrize("method", ["get", "post"])
def test_alerts_need_a_valid_key(client, app, method):
    response = getattr(client, method)(URL, json={"threshold": 1, "webhook_url": HOOK})
    assert response.status_code == 401
    assert stored_alerts(app) == []


def test_browsers_may_create_and_delete_alerts_from_other_origins(client):
    headers = {
        "Origin": "https://dashboard.example",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    for method, path in (("POST", URL), ("DELETE", f"{URL}/1")):
        response = client.options(path, headers={**headers, "Access-Control-Request-Method": method})
        assert response.status_code == 200
        assert method in response.headers["Access-Control-Allow-Methods"]
        assert "content-type" in response.headers["Access-Control-Allow-Headers"].lower()


def test_a_balance_request_stays_one_statement_with_alerts_present(client, auth, create_token, count_statements):
    key = create_token(remain_quota=5)
    client.post(URL, json={"threshold": 1, "webhook_url": HOOK, "scope": "token"}, headers=auth(key))
    client.get("/v1/balance", headers=auth(key))
    with count_statements() as statements:
        assert client.get("/v1/balance", headers=auth(key)).status_code == 200
    assert len(statements) == 1, statements


def test_only_whether_webhooks_may_target_private_networks_is_an_environment_setting():
    assert Settings.from_env({"ALERT_ALLOW_PRIVATE_TARGETS": "true"}).alert_allow_private_targets is True
    assert Settings.from_env({}).alert_allow_private_targets is False


@pytest.mark.parametrize(
    "options",
    [
        ["--timeout", "0"],
        ["--timeout", "60.001"],
        ["--timeout", "1e400"],
        ["--attempts", "0"],
        ["--attempts", "11"],
        ["--attempts", "99999999999999999999"],
        ["--retry-backoff", "-1"],
        ["--retry-backoff", "61"],
        ["--workers", "0"],
        ["--deadline", "0"],
        ["--max-backoff", "59"],
    ],
)
def test_check_alerts_refuses_delivery_options_out_of_range_before_sending_anything(app, options):
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["check-alerts", *options])
    assert result.exit_code == 2, result.output
    assert "Invalid value" in result.output


def test_a_lock_name_fits_mysql_limit_whatever_the_database_name():
    assert store.lock_name("gateway", 42) == "balance_alerts.create.gateway.42"
    long = store.lock_name("d" * 64, 2**31 - 1)
    assert len(long) <= 64 and long != store.lock_name("e" * 64, 2**31 - 1)
