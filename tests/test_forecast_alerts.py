"""Forecast alerts: ``"days_left": N`` notifies once when the spend forecast says fewer than N days are left.

The forecast is the one ``GET /v1/usage`` shows (the net spend of the last 7
whole UTC days against the balance left), read from a gateway ``logs`` table
seeded here as new-api creates it; notifications go to a real loopback
receiver (tests/test_alert_webhooks.py), signed as every alert is.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from balance_service.alerts.models import BalanceAlert
from balance_service.extensions import db as _db
from balance_service.gateway.tables import cache
from tests.gateway_logs import CONSUME, REFUND, GatewayTables, Log, token_id
from tests.test_alert_webhooks import expected_signature, listed, run_check, running_receiver, set_token, set_user_quota

URL = "/v1/user/balance/alerts"
USD = 500_000  # quota units per dollar


@pytest.fixture
def receiver():
    with running_receiver() as state:
        yield state


@pytest.fixture
def app(make_app):
    return make_app(ALERT_ALLOW_PRIVATE_TARGETS=True)


@pytest.fixture
def logs(gateway_tables):
    return gateway_tables().create_logs("new-api")


def days_ago(n: int, hour: int = 12) -> int:
    """Unix seconds at ``hour`` o'clock UTC, ``n`` days before today."""
    today = datetime.now(UTC).replace(hour=hour, minute=0, second=0, microsecond=0)
    return int((today - timedelta(days=n)).timestamp())


def spend_a_dollar_a_day(logs: GatewayTables, user_id: int, key_id: int = 0) -> None:
    """7 USD net over the 7 whole days before today (8 spent, 1 refunded), and today's spend, which does not count."""
    rows = [Log(user_id, days_ago(n), CONSUME, USD, "gpt-4o", "work", key_id) for n in range(1, 8)]
    rows.append(Log(user_id, days_ago(3), CONSUME, USD, "claude-3", "work", key_id))
    rows.append(Log(user_id, days_ago(3, 13), REFUND, USD, "claude-3", "work", key_id))
    rows.append(Log(user_id, days_ago(0, 0), CONSUME, 50 * USD, "gpt-4o", "work", key_id))
    rows.append(Log(user_id, days_ago(9), CONSUME, 50 * USD, "gpt-4o", "work", key_id))  # before the window
    logs.add(rows)


def create_forecast_alert(app, key, url, days_left, scope="account"):
    response = app.test_client().post(
        URL,
        json={"days_left": days_left, "webhook_url": url, "scope": scope},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()["alert"]


def test_a_forecast_below_the_days_notifies_once_with_the_forecast(app, receiver, logs, create_user, create_token):
    owner = create_user(quota=20 * USD)
    key = create_token(user_id=owner)
    spend_a_dollar_a_day(logs, owner)
    alert = create_forecast_alert(app, key, receiver.url, 14)
    assert (alert["days_left"], alert["threshold"]) == (14, None)

    assert run_check(app).exit_code == 0
    assert receiver.requests == [], "20 days left is not below 14"

    set_user_quota(app, owner, 10 * USD)
    result = run_check(app)
    assert result.exit_code == 0, result.output
    assert "1 notified" in result.output
    [request] = receiver.requests
    assert request.headers["x-balance-event"] == "balance.forecast_below_days"
    assert request.headers["x-balance-signature"] == expected_signature(alert["secret"], request)
    body = request.json
    runs_out_on = (datetime.now(UTC).date() + timedelta(days=10)).isoformat()
    assert body == {
        "event": "balance.forecast_below_days",
        "alert_id": alert["id"],
        "scope": "account",
        "user_id": owner,
        "token_id": None,
        "balance": Decimal(10),
        "threshold": None,
        "days_left": Decimal(14),
        "forecast": {"daily_rate": Decimal(1), "days_left": Decimal(10), "runs_out_on": runs_out_on},
        "unit": "USD",
        "timestamp": body["timestamp"],
    }

    assert run_check(app).exit_code == 0
    assert len(receiver.requests) == 1, "no repeat while the forecast stays below"
    assert listed(app, key)[0]["state"] == "below"

    set_user_quota(app, owner, 14 * USD)  # exactly 14 days: not below, re-armed
    assert "1 re-armed" in run_check(app).output
    assert listed(app, key)[0]["state"] == "above"
    set_user_quota(app, owner, 13 * USD)
    assert "1 notified" in run_check(app).output
    assert len(receiver.requests) == 2
    assert receiver.requests[1].json["forecast"]["days_left"] == Decimal(13)


def test_a_key_alert_watches_the_forecast_of_that_key_alone(app, receiver, logs, create_user, create_token):
    owner = create_user(quota=1000 * USD)
    key = create_token(user_id=owner, remain_quota=3 * USD)
    other = create_token(user_id=owner, remain_quota=3 * USD)
    spend_a_dollar_a_day(logs, owner, token_id(app, key))
    create_forecast_alert(app, key, receiver.url, 7, scope="token")
    create_forecast_alert(app, other, receiver.url, 7, scope="token")  # the other key spent nothing
    create_forecast_alert(app, key, receiver.url, 7)  # the account has 1000 days left

    result = run_check(app)
    assert "1 notified" in result.output, result.output
    [request] = receiver.requests
    assert request.json["scope"] == "token"
    assert request.json["token_id"] == token_id(app, key)
    assert request.json["forecast"]["days_left"] == Decimal(3)


def test_a_forecast_that_cannot_be_told_never_fires(app, make_app, receiver, gateway_tables, create_user, create_token):
    owner = create_user(quota=1 * USD)
    limited = create_token(user_id=owner, remain_quota=USD)
    unlimited = create_token(user_id=owner, unlimited_quota=True)
    create_forecast_alert(app, limited, receiver.url, 365)
    create_forecast_alert(app, unlimited, receiver.url, 365, scope="token")

    assert "0 notified" in run_check(app).output  # no logs table at all
    logs = gateway_tables().create_logs("new-api")
    logs.set_options({"LogConsumeEnabled": "true"})
    # A fresh process: the layout seen above (no logs, no options) is trusted for a minute.
    app = make_app(ALERT_ALLOW_PRIVATE_TARGETS=True)
    assert "0 notified" in run_check(app).output  # a logs table, nothing spent
    spend_a_dollar_a_day(logs, owner, token_id(app, unlimited))
    set_token(app, unlimited, remain_quota=0)
    assert "1 notified" in run_check(app).output  # the account's forecast, never the unlimited key's
    assert [r.json["scope"] for r in receiver.requests] == ["account"]

    # The gateway stops logging consumption: no forecast, so the fired alert re-arms and nothing is sent.
    logs.set_options({"LogConsumeEnabled": "false"})
    cache.clear()  # each check-alerts run is a process of its own, with nothing cached yet
    result = run_check(app)
    assert "0 notified" in result.output and "1 re-armed" in result.output, result.output
    assert len(receiver.requests) == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"threshold": 1, "days_left": 7}, "not both"),
        ({}, "threshold or days_left is required"),
        ({"days_left": None}, "threshold or days_left is required"),
        ({"days_left": 0}, "more than 0 and at most 365"),
        ({"days_left": -1}, "more than 0 and at most 365"),
        ({"days_left": 365.1}, "more than 0 and at most 365"),
        ({"days_left": "7"}, "days_left must be a JSON number"),
        ({"days_left": True}, "days_left must be a JSON number"),
        ({"days_left": 7.25}, "one decimal place"),
    ],
)
def test_bad_days_left_is_refused_with_400_and_stores_nothing(app, create_token, receiver, body, message):
    key = create_token()
    response = app.test_client().post(
        URL, json={**body, "webhook_url": receiver.url}, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 400
    assert message in response.get_json()["message"]
    with app.app_context():
        assert _db.session.execute(_db.select(BalanceAlert)).all() == []


def test_days_left_in_tenths_is_listed_as_given(app, create_token, receiver):
    key = create_token()
    create_forecast_alert(app, key, receiver.url, Decimal("0.5"))
    create_forecast_alert(app, key, receiver.url, 365)
    assert [(a["days_left"], a["threshold"]) for a in listed(app, key)] == [(Decimal("0.5"), None), (365, None)]


DEAD_LOGS = {
    "sqlite": "sqlite:////nonexistent-dir/sub/logs.sqlite3",
    "postgresql": "postgresql://postgres@127.0.0.1:1/logs",
    "mariadb": "mysql://root@127.0.0.1:1/logs",
}


def test_an_unreadable_log_database_holds_forecast_alerts_and_threshold_alerts_go_on(
    make_app, receiver, create_user, create_token, backend
):
    app = make_app(
        ALERT_ALLOW_PRIVATE_TARGETS=True,
        LOG_DATABASE_URL=DEAD_LOGS[backend],
    )
    owner = create_user(quota=USD)
    key = create_token(user_id=owner)
    create_forecast_alert(app, key, receiver.url, 30)
    threshold = app.test_client().post(
        URL, json={"threshold": 5, "webhook_url": receiver.url}, headers={"Authorization": f"Bearer {key}"}
    )
    assert threshold.status_code == 201

    result = run_check(app)
    assert result.exit_code == 0, result.output
    assert "1 notified" in result.output and "1 skipped" in result.output, result.output
    assert [r.json["event"] for r in receiver.requests] == ["balance.below_threshold"]
    assert [a["state"] for a in listed(app, key)] == ["above", "below"]
