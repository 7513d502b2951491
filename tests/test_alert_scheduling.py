"""check-alerts against webhooks that never answer: bounded per alert, concurrent, backed off, still once per crossing.

The slow receivers are real TCP servers on loopback that accept a connection,
read the request and then never answer (or answer one byte at a time). Each
test bounds its waits with small timeouts and deadlines.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import update

from balance_service.alerts.checker import DeliveryOptions, check_alerts
from balance_service.alerts.delivery import deliver
from balance_service.alerts.models import BalanceAlert
from balance_service.extensions import db as _db
from balance_service.gateway.tables import User
from tests.helpers import serving

URL = "/v1/user/balance/alerts"
USD = 500_000


@dataclass
class SilentReceiver:
    """Accepts connections and holds them open without answering (or drips an answer out)."""

    url: str = ""
    connections: int = 0
    accepted_at: list[float] = field(default_factory=list)


@contextmanager
def silent_receiver(drip: float | None = None) -> Iterator[SilentReceiver]:
    """A loopback HTTP "server" that never completes an answer.

    With ``drip``, it sends ``HTTP/1.1 200 OK`` one byte every ``drip`` seconds
    and never finishes the headers: every read gets a byte before any socket
    timeout, so only a total deadline ends the request.
    """
    state = SilentReceiver()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    state.url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    stopping = threading.Event()
    held: list[socket.socket] = []
    holders: list[threading.Thread] = []

    def hold(connection: socket.socket) -> None:
        connection.settimeout(0.05)
        status = b"HTTP/1.1 200 OK\r\n"
        sent = 0
        while not stopping.is_set():
            with suppress(TimeoutError):
                if connection.recv(65536) == b"":
                    return
            if drip is not None and stopping.wait(drip) is False:
                with suppress(OSError):
                    connection.sendall(status[sent % len(status) : sent % len(status) + 1])
                    sent += 1

    def serve() -> None:
        while not stopping.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            state.connections += 1
            state.accepted_at.append(time.monotonic())
            held.append(connection)
            holder = threading.Thread(target=hold, args=(connection,), daemon=True)
            holders.append(holder)
            holder.start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        stopping.set()
        thread.join()
        for holder in holders:  # each sees ``stopping`` within its 50 ms read timeout; then its socket may close
            holder.join()
        listener.close()
        for connection in held:
            connection.close()


def send(url: str, **overrides):
    options = {
        "event": "balance.below_threshold",
        "timestamp": 0,
        "allow_private": True,
        "timeout": 5,
        "attempts": 3,
        "backoff": 0.01,
        "dns_timeout": 1,
    }
    options.update(overrides)
    return deliver(url, b"{}", "secret", **options)


def test_a_never_answering_webhook_is_given_up_at_the_delivery_deadline():
    with silent_receiver() as receiver:
        started = time.monotonic()
        result = send(receiver.url, deadline=1)
        elapsed = time.monotonic() - started
    assert not result.ok
    assert result.error.endswith("gave up at the 1 s delivery deadline"), result.error
    assert elapsed < 1.5, elapsed
    assert receiver.connections == 1  # no second attempt starts past the deadline


def test_a_receiver_answering_a_byte_at_a_time_is_cut_off_at_the_deadline():
    """Each byte resets the socket timeout; only the deadline's timer ends the attempt."""
    with silent_receiver(drip=0.1) as receiver:
        started = time.monotonic()
        result = send(receiver.url, timeout=1, attempts=1, deadline=1.5)
        elapsed = time.monotonic() - started
    assert not result.ok
    assert elapsed < 2, elapsed


def test_without_a_deadline_each_attempt_waits_its_timeout():
    with silent_receiver() as receiver:
        started = time.monotonic()
        result = send(receiver.url, timeout=0.3, attempts=2)
        elapsed = time.monotonic() - started
    assert not result.ok and result.attempts == 2
    assert "timed out" in result.error
    assert 0.6 <= elapsed < 1.5, elapsed
    assert receiver.connections == 2


@contextmanager
def timed_receiver() -> Iterator[tuple[str, list[float]]]:
    """A receiver that answers 204 at once; yields (URL, time.monotonic() of each request)."""
    times: list[float] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            times.append(time.monotonic())
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with serving(server):
        yield f"http://127.0.0.1:{server.server_port}/hook", times


#: check-alerts' delivery options against receivers that never answer: each alert is given up on after 1 s.
SLOW_WEBHOOKS = DeliveryOptions(timeout=5, attempts=2, backoff=0.01, deadline=1)


def below_threshold_alert(app, create_user, create_token, url, user_id=None):
    """An account alert at 5 USD on an account that has 1 USD left; returns the account id."""
    if user_id is None:
        user_id = create_user(quota=1 * USD)
    key = create_token(user_id=user_id)
    response = app.test_client().post(
        URL, json={"threshold": 5, "webhook_url": url}, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 201, response.get_json()
    return user_id


def timed_check(app, now=None, delivery=SLOW_WEBHOOKS):
    started = time.monotonic()
    with app.app_context():
        summary = check_alerts(now=now, delivery=delivery)
    return summary, started, time.monotonic() - started


@pytest.mark.backend_independent
def test_never_answering_webhooks_do_not_delay_another_accounts_alert(make_app, create_user, create_token):
    """The report's case: three hung webhooks delayed a victim's alert by 55 s, one alert after another."""
    app = make_app(ALERT_ALLOW_PRIVATE_TARGETS=True)
    delivery = dataclasses.replace(SLOW_WEBHOOKS, workers=4)
    with silent_receiver() as hung, timed_receiver() as (victim_url, victim_times):
        for _ in range(3):
            below_threshold_alert(app, create_user, create_token, hung.url)
        below_threshold_alert(app, create_user, create_token, victim_url)
        summary, started, elapsed = timed_check(app, delivery=delivery)
    assert (summary.notified, summary.failed) == (1, 3)
    [received] = victim_times
    assert received - started < 0.8, received - started
    assert elapsed < 1 + 1, f"the run took {elapsed:.1f} s; the hung deliveries ran one after another"
    assert hung.connections == 3


@pytest.mark.backend_independent
def test_each_accounts_first_alert_goes_before_any_accounts_second(make_app, create_user, create_token):
    """With one delivery at a time, an account with many failing webhooks cannot make others wait behind all of them."""
    app = make_app(ALERT_ALLOW_PRIVATE_TARGETS=True)
    delivery = dataclasses.replace(SLOW_WEBHOOKS, workers=1)
    with silent_receiver() as hung, timed_receiver() as (victim_url, victim_times):
        noisy = below_threshold_alert(app, create_user, create_token, hung.url)
        for _ in range(2):
            below_threshold_alert(app, create_user, create_token, hung.url, user_id=noisy)
        below_threshold_alert(app, create_user, create_token, victim_url)
        summary, started, _ = timed_check(app, delivery=delivery)
    assert (summary.notified, summary.failed) == (1, 3)
    [received] = victim_times
    assert received - started < 1.6, "the victim waited behind more than one of the noisy account's alerts"


def stored(app):
    with app.app_context():
        alerts = _db.session.execute(_db.select(BalanceAlert).order_by(BalanceAlert.id)).scalars().all()
        _db.session.expunge_all()
        return alerts


def test_a_failing_alert_backs_off_with_a_capped_doubling_pause(make_app, create_user, create_token):
    app = make_app(ALERT_ALLOW_PRIVATE_TARGETS=True)
    delivery = dataclasses.replace(SLOW_WEBHOOKS, max_backoff=150)
    with silent_receiver() as hung:
        below_threshold_alert(app, create_user, create_token, hung.url)
        now = int(time.time())
        first, _, _ = timed_check(app, now=now, delivery=delivery)
        assert (first.failed, hung.connections) == (1, 1)
        [alert] = stored(app)
        assert alert.state == "above" and alert.failures == 1
        assert "gave up at the 1 s delivery deadline" in alert.last_error
        first_due = alert.next_attempt_at

        # Not due yet: the next runs leave it alone (and say so) instead of trying it first every time.
        held, _, elapsed = timed_check(app, now=now + 59, delivery=delivery)
        assert (held.failed, held.deferred, hung.connections) == (0, 1, 1)
        assert elapsed < 0.5

        second, _, _ = timed_check(app, now=now + 61, delivery=delivery)
        assert (second.failed, hung.connections) == (1, 2)
        [alert] = stored(app)
        assert alert.failures == 2
        assert alert.next_attempt_at - first_due == timedelta(seconds=61 + 120 - 60)

        third, _, _ = timed_check(app, now=now + 61 + 121, delivery=delivery)
        [alert] = stored(app)
        assert (third.failed, alert.failures) == (1, 3)
        # 240 s would be next; the cap holds it at 150.
        assert alert.next_attempt_at - first_due == timedelta(seconds=61 + 121 + 150 - 60)


def test_after_the_webhook_recovers_the_crossing_is_notified_once(make_app, create_user, create_token):
    app = make_app(ALERT_ALLOW_PRIVATE_TARGETS=True)
    with silent_receiver() as hung, timed_receiver() as (url, times):
        below_threshold_alert(app, create_user, create_token, hung.url)
        now = int(time.time())
        assert timed_check(app, now=now)[0].failed == 1
        with app.app_context():
            _db.session.execute(update(BalanceAlert).values(webhook_url=url))
            _db.session.commit()
        recovered, _, _ = timed_check(app, now=now + 61)
        assert recovered.notified == 1
        [alert] = stored(app)
        assert (alert.state, alert.failures, alert.next_attempt_at, alert.last_error) == ("below", 0, None, None)
        for later in (now + 120, now + 4000):
            assert timed_check(app, now=later)[0].notified == 0
    assert len(times) == 1


def test_a_backed_off_alert_is_not_notified_for_a_crossing_that_ended(make_app, create_user, create_token):
    """Backing off keeps the alert armed; if the balance recovers meanwhile, nothing is sent later."""
    app = make_app(ALERT_ALLOW_PRIVATE_TARGETS=True)
    with silent_receiver() as hung:
        owner = below_threshold_alert(app, create_user, create_token, hung.url)
        now = int(time.time())
        assert timed_check(app, now=now)[0].failed == 1
        with app.app_context():
            _db.session.execute(update(User).where(User.id == owner).values(quota=10 * USD))
            _db.session.commit()
        later, _, _ = timed_check(app, now=now + 61)
        assert (later.failed, later.notified, hung.connections) == (0, 0, 1)
