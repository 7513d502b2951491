"""``flask check-alerts`` posts one signed notification per crossing to a real HTTP receiver.

The receiver is a threaded ``http.server`` on a free loopback port; loopback
targets are allowed here with ALERT_ALLOW_PRIVATE_TARGETS, as an operator
would for an internal receiver. No test sends anything off this machine.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import socket
import ssl
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import simplejson
from sqlalchemy import event, text, update

from balance_service import create_app
from balance_service.alerts.checker import DeliveryOptions, check_alerts, claim
from balance_service.alerts.models import BalanceAlert
from balance_service.extensions import db as _db
from balance_service.gateway.tables import TOKEN_DISABLED, Token, User
from balance_service.migrations import init_database
from tests.helpers import run_concurrently, self_signed_certificate, serving

URL = "/v1/user/balance/alerts"
USD = 500_000  # quota units per dollar


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self):
        return simplejson.loads(self.body, use_decimal=True)


@dataclass
class Receiver:
    """Records every request; answers with the queued statuses, then 200."""

    url: str = ""
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextmanager
def running_receiver(tls: ssl.SSLContext | None = None):
    """Start a receiver on a free loopback port (behind TLS when given a context); stop it afterwards."""
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            time.sleep(state.delay)
            with state.lock:
                state.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                status = state.statuses.pop(0) if state.statuses else 200
            payload = b'{"ok":true}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    scheme = "https" if tls else "http"
    state.url = f"{scheme}://127.0.0.1:{server.server_address[1]}/balance-hook?source=test"
    with serving(server):
        yield state


@pytest.fixture
def receiver():
    with running_receiver() as state:
        yield state


@pytest.fixture
def app(make_app):
    return make_app(ALERT_ALLOW_PRIVATE_TARGETS=True)


#: check-alerts' delivery options in these tests: quick retries, a receiver on loopback answers at once.
QUICK_RETRIES = ("--retry-backoff", "0.01", "--timeout", "2")


def run_check(app, *options):
    """``flask --app wsgi check-alerts [options]``, as cron runs it (after ``QUICK_RETRIES``)."""
    with app.app_context():
        return app.test_cli_runner().invoke(args=["check-alerts", *QUICK_RETRIES, *options])


def create_alert(app, key, url, threshold, scope="account"):
    response = app.test_client().post(
        URL,
        json={"threshold": Decimal(threshold), "webhook_url": url, "scope": scope},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()["alert"]


def set_user_quota(app, user_id, quota):
    with app.app_context():
        _db.session.execute(update(User).where(User.id == user_id).values(quota=quota))
        _db.session.commit()


def set_token(app, key, **values):
    with app.app_context():
        _db.session.execute(update(Token).where(Token.key == key[3:]).values(**values))
        _db.session.commit()


def pause_over(app):
    """A failed alert is held back for a while (test_alert_scheduling.py); here that time has passed."""
    with app.app_context():
        _db.session.execute(update(BalanceAlert).values(next_attempt_at=None))
        _db.session.commit()


def listed(app, key):
    response = app.test_client().get(URL, headers={"Authorization": f"Bearer {key}"})
    return response.get_json()["alerts"]


def expected_signature(secret, request):
    """The signature header the request must carry: its time and delivery id, and the HMAC over both and the body."""
    timestamp, delivery = request.headers["x-balance-timestamp"], request.headers["x-balance-delivery"]
    signed = f"{timestamp}.{delivery}.".encode() + request.body
    return f"t={timestamp},d={delivery},v1={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}"


def free_closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_falling_below_the_threshold_sends_one_signed_notification(app, receiver, create_user, create_token):
    owner = create_user(quota=10 * USD)
    key = create_token(user_id=owner)
    alert = create_alert(app, key, receiver.url, "5")

    first = run_check(app)
    assert first.exit_code == 0, first.output
    assert receiver.requests == []

    set_user_quota(app, owner, 2 * USD)
    second = run_check(app)
    assert second.exit_code == 0, second.output
    assert "1 notified" in second.output
    [request] = receiver.requests
    assert request.path == "/balance-hook?source=test"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-balance-signature"] == expected_signature(alert["secret"], request)
    body = request.json
    assert body == {
        "event": "balance.below_threshold",
        "alert_id": alert["id"],
        "scope": "account",
        "user_id": owner,
        "token_id": None,
        "balance": Decimal(2),
        "threshold": Decimal(5),
        "unit": "USD",
        "timestamp": body["timestamp"],
    }
    assert request.headers["x-balance-timestamp"] == str(body["timestamp"])
    assert abs(body["timestamp"] - time.time()) < 60
    assert b'"balance":2.000000' in request.body  # exact JSON numbers, not floats

    assert run_check(app).exit_code == 0
    assert len(receiver.requests) == 1, "no repeat while the balance stays below"
    [state] = listed(app, key)
    assert state["state"] == "below"
    assert state["last_notified_at"] is not None
    assert state["last_error"] is None


def test_a_balance_equal_to_the_threshold_is_not_below_it(app, receiver, create_user, create_token):
    owner = create_user(quota=5 * USD)
    create_alert(app, create_token(user_id=owner), receiver.url, "5")
    assert run_check(app).exit_code == 0
    set_user_quota(app, owner, 5 * USD - 1)
    run_check(app)
    assert len(receiver.requests) == 1


def test_a_500_is_retried_and_the_retry_succeeds(app, receiver, create_user, create_token):
    receiver.statuses = [500]
    owner = create_user(quota=0)
    key = create_token(user_id=owner)
    alert = create_alert(app, key, receiver.url, "1")
    result = run_check(app)
    assert result.exit_code == 0, result.output
    first, second = receiver.requests
    assert first.body == second.body
    assert first.headers["x-balance-delivery"] == second.headers["x-balance-delivery"]
    assert second.headers["x-balance-signature"] == expected_signature(alert["secret"], second)
    assert listed(app, key)[0]["state"] == "below"
    run_check(app)
    assert len(receiver.requests) == 2


def test_a_delivery_that_keeps_failing_is_recorded_and_sent_again_next_run(app, receiver, create_user, create_token):
    receiver.statuses = [500, 502, 503]
    owner = create_user(quota=0)
    key = create_token(user_id=owner)
    create_alert(app, key, receiver.url, "1")
    failed = run_check(app)
    assert failed.exit_code == 1
    assert "1 failed" in failed.output
    assert len(receiver.requests) == 3
    [alert] = listed(app, key)
    assert alert["state"] == "above"
    assert alert["last_error"] == "the webhook answered HTTP 503"
    assert alert["last_notified_at"] is None

    assert "1 held back" in run_check(app).output
    assert len(receiver.requests) == 3
    pause_over(app)
    assert run_check(app).exit_code == 0
    assert len(receiver.requests) == 4
    [alert] = listed(app, key)
    assert (alert["state"], alert["last_error"]) == ("below", None)


def test_a_4xx_answer_is_not_retried_within_the_run(app, receiver, create_user, create_token):
    receiver.statuses = [404]
    owner = create_user(quota=0)
    key = create_token(user_id=owner)
    create_alert(app, key, receiver.url, "1")
    assert run_check(app).exit_code == 1
    assert len(receiver.requests) == 1
    assert listed(app, key)[0]["last_error"] == "the webhook answered HTTP 404"


def test_an_unreachable_receiver_is_retried_then_recorded(make_app, create_user, create_token):
    app = make_app(ALERT_ALLOW_PRIVATE_TARGETS=True)
    owner = create_user(quota=0)
    key = create_token(user_id=owner)
    create_alert(app, key, f"http://127.0.0.1:{free_closed_port()}/hook", "1")
    result = run_check(app, "--attempts", "2")
    assert result.exit_code == 1
    [alert] = listed(app, key)
    assert alert["state"] == "above"
    assert "ConnectionRefusedError" in alert["last_error"]


def test_a_slow_receiver_times_out_and_is_recorded(make_app, receiver, create_user, create_token):
    app = make_app(ALERT_ALLOW_PRIVATE_TARGETS=True)
    receiver.delay = 0.6
    owner = create_user(quota=0)
    key = create_token(user_id=owner)
    create_alert(app, key, receiver.url, "1")
    assert run_check(app, "--timeout", "0.2", "--attempts", "1").exit_code == 1
    assert "timed out" in listed(app, key)[0]["last_error"]


def test_rising_back_rearms_the_alert_and_a_new_fall_notifies_again(app, receiver, create_user, create_token):
    owner = create_user(quota=0)
    key = create_token(user_id=owner)
    create_alert(app, key, receiver.url, "1")
    run_check(app)
    assert len(receiver.requests) == 1

    set_user_quota(app, owner, 3 * USD)
    rearm = run_check(app)
    assert "1 re-armed" in rearm.output
    assert len(receiver.requests) == 1, "rising sends nothing"
    assert listed(app, key)[0]["state"] == "above"

    set_user_quota(app, owner, USD // 2)
    run_check(app)
    assert len(receiver.requests) == 2
    assert receiver.requests[1].json["balance"] == Decimal("0.5")


def test_a_token_alert_follows_the_key_balance_not_the_account(app, receiver, create_user, create_token):
    owner = create_user(quota=100 * USD)
    key = create_token(user_id=owner, remain_quota=3 * USD)
    alert = create_alert(app, key, receiver.url, "2", scope="token")
    run_check(app)
    assert receiver.requests == []
    set_token(app, key, remain_quota=USD)
    run_check(app)
    [request] = receiver.requests
    assert request.json["scope"] == "token"
    assert request.json["token_id"] == alert["token_id"]
    assert request.json["balance"] == Decimal(1)


def test_unlimited_balances_never_alert(make_app, receiver, create_user, create_token):
    app = make_app(ALERT_ALLOW_PRIVATE_TARGETS=True, UNLIMITED_USER_ROLES=frozenset({100}))
    root = create_user(quota=0, role=100)
    create_alert(app, create_token(user_id=root), receiver.url, "1")
    unlimited_key = create_token(remain_quota=0, unlimited_quota=True)
    create_alert(app, unlimited_key, receiver.url, "1", scope="token")
    assert run_check(app).exit_code == 0
    assert receiver.requests == []


def test_a_disabled_key_is_not_watched(app, receiver, create_user, create_token):
    key = create_token(remain_quota=0)
    create_alert(app, key, receiver.url, "1", scope="token")
    set_token(app, key, status=TOKEN_DISABLED)
    assert "1 skipped" in run_check(app).output
    assert receiver.requests == []


def test_amounts_follow_the_configured_unit(make_app, receiver, create_user, create_token):
    app = make_app(ALERT_ALLOW_PRIVATE_TARGETS=True, BALANCE_UNIT="CNY")
    owner = create_user(quota=USD)
    create_alert(app, create_token(user_id=owner), receiver.url, "14.6")
    run_check(app)
    [request] = receiver.requests
    assert b'"balance":7.300000' in request.body
    assert b'"threshold":14.600000' in request.body
    assert request.json["unit"] == "CNY"


def test_a_target_that_became_private_is_not_called(app, make_app, receiver, create_user, create_token):
    """What DNS rebinding looks like: the address is checked again at send time, not only at creation."""
    owner = create_user(quota=0)
    key = create_token(user_id=owner)
    create_alert(app, key, receiver.url, "1")
    strict = make_app()  # same database, private targets refused
    assert run_check(strict).exit_code == 1
    assert receiver.requests == []
    [alert] = listed(app, key)
    assert alert["state"] == "above"
    assert "must point to a public address" in alert["last_error"]


def test_only_one_of_two_claims_on_a_crossing_wins(app, create_user, create_token, receiver):
    alert = create_alert(app, create_token(user_id=create_user(quota=0)), receiver.url, "1")
    with app.app_context():
        assert claim(alert["id"]) is True
        assert claim(alert["id"]) is False


def test_two_runs_at_once_send_one_notification(app, receiver, create_user, create_token):
    """Both runs read the alert as "above" before either claims it; the database picks one sender."""
    create_alert(app, create_token(user_id=create_user(quota=0)), receiver.url, "1")
    both_have_read = threading.Barrier(2, timeout=10)
    held = []

    def hold_first_claims(conn, cursor, statement, *args):
        if statement.startswith("UPDATE balance_alerts SET state") and len(held) < 2:
            held.append(statement)
            both_have_read.wait()

    with app.app_context():
        engine = _db.engine
    event.listen(engine, "before_cursor_execute", hold_first_claims)
    results = []

    def run():
        with app.app_context():
            results.append(check_alerts(delivery=DeliveryOptions(backoff=0.01, timeout=2)))

    try:
        run_concurrently([run, run])
    finally:
        event.remove(engine, "before_cursor_execute", hold_first_claims)
    assert len(held) == 2
    assert len(receiver.requests) == 1
    assert sorted(summary.notified for summary in results) == [0, 1]


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for ``localhost`` (and only that name)."""
    if shutil.which("openssl") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the openssl command must be installed in CI, to test HTTPS webhooks")
        pytest.skip("needs the openssl command to make a certificate")
    return self_signed_certificate(tmp_path, "localhost")


def test_https_webhooks_check_the_certificate_against_the_url_host(
    make_app, certificate, create_user, create_token, monkeypatch
):
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    app = make_app(ALERT_ALLOW_PRIVATE_TARGETS=True)
    owner = create_user(quota=0)
    api_key = create_token(user_id=owner)
    with running_receiver(tls=context) as receiver:
        by_name = receiver.url.replace("127.0.0.1", "localhost")
        create_alert(app, api_key, by_name, "1")
        create_alert(app, api_key, receiver.url, "1")  # the certificate does not name 127.0.0.1

        assert run_check(app, "--attempts", "1").exit_code == 1
        assert receiver.requests == []
        assert all("CERTIFICATE_VERIFY_FAILED" in a["last_error"] for a in listed(app, api_key))

        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # now trusted, like a real CA's certificate
        pause_over(app)
        assert run_check(app, "--attempts", "1").exit_code == 1
        [request] = receiver.requests
        assert request.headers["host"] == f"localhost:{by_name.split(':')[2].split('/')[0]}"
        by_name_alert, by_address_alert = listed(app, api_key)
        assert by_name_alert["state"] == "below"
        assert "IP address mismatch" in by_address_alert["last_error"]


def test_a_soft_deleted_key_is_not_watched(app, receiver, create_token):
    key = create_token(remain_quota=0)
    create_alert(app, key, receiver.url, "1", scope="token")
    set_token(app, key, deleted_at=datetime(2026, 1, 1))
    assert "1 skipped" in run_check(app).output
    assert receiver.requests == []


ONE_API_TABLES = (
    "CREATE TABLE users (id INTEGER PRIMARY KEY, username VARCHAR(64) UNIQUE, display_name VARCHAR(64), role INTEGER,"
    ' status INTEGER, quota BIGINT, used_quota BIGINT, request_count INTEGER, "group" VARCHAR(32), password TEXT)',
    "CREATE TABLE tokens (id INTEGER PRIMARY KEY, user_id INTEGER, key CHAR(48) UNIQUE, status INTEGER,"
    " name VARCHAR(64), created_time BIGINT, accessed_time BIGINT, expired_time BIGINT,"
    " remain_quota BIGINT, unlimited_quota BOOLEAN, used_quota BIGINT)",
    "INSERT INTO users VALUES (1, 'old', 'old', 1, 1, 100, 0, 0, 'default', 'x')",
    f"INSERT INTO tokens VALUES (1, 1, '{'o' * 48}', 1, 'k', 0, 0, -1, 0, 0, 0)",
)


def test_alerts_work_on_a_one_api_database_without_deleted_at(tmp_path, receiver):
    """one-api's tables have no soft-delete column; the alerts table sits beside them."""
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'one-api.db'}", "ALERT_ALLOW_PRIVATE_TARGETS": True})
    with app.app_context():
        with _db.engine.begin() as conn:
            for statement in ONE_API_TABLES:
                conn.execute(text(statement))
        init_database(_db.engine)  # init-db beside one-api's tables: balance_alerts only
    try:
        alert = create_alert(app, "sk-" + "o" * 48, receiver.url, "1")
        assert run_check(app).exit_code == 0
        [request] = receiver.requests
        assert (request.json["alert_id"], request.json["user_id"]) == (alert["id"], 1)
    finally:
        with app.app_context():
            _db.engine.dispose()


def test_an_unexpected_error_while_sending_counts_as_a_failed_delivery(
    app, make_app, receiver, create_user, create_token, caplog
):
    """A crossing is claimed ("below") before sending; whatever goes wrong after the claim, the alert
    must go back to "above" instead of staying claimed and silent forever. Here an app built with an
    unknown unit (given to create_app as an already-parsed value, so past the parser's checks) fails while
    writing the payload."""
    owner = create_user(quota=0)
    key = create_token(user_id=owner)
    alert = create_alert(app, key, receiver.url, "1")
    broken = make_app(ALERT_ALLOW_PRIVATE_TARGETS=True, BALANCE_UNIT=b"EUR")  # same database
    failed = run_check(broken)
    assert failed.exit_code == 1, failed.output
    assert "1 failed" in failed.output
    [state] = listed(app, key)
    assert state["state"] == "above"
    assert state["last_error"] == "unexpected error while sending (ValueError)"
    assert "ValueError" in caplog.text
    assert alert["secret"] not in caplog.text and key[3:7] not in caplog.text

    pause_over(app)
    assert run_check(app).exit_code == 0
    assert len(receiver.requests) == 1
    assert listed(app, key)[0]["state"] == "below"
