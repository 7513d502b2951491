"""GET /v1/balance reports the one key that made the request."""

import sqlite3
from decimal import Decimal

import pytest


def test_token_balance_reports_remain_and_used_quota(client, auth, create_user, create_token):
    key = create_token(user_id=create_user(quota=99999999), remain_quota=750000, used_quota=1)
    response = client.get("/v1/balance", headers=auth(key))
    assert response.status_code == 200
    assert response.get_json() == {
        "success": True,
        "remain_balance": Decimal("1.5"),
        "used_balance": Decimal("0.000002"),
        "unlimited_quota": False,
        "unit": "USD",
        "balance": Decimal("1.5"),
        "used": Decimal("0.000002"),
    }


def test_unlimited_token_reports_minus_one_and_keeps_its_used_amount(client, auth, create_token):
    key = create_token(unlimited_quota=True, remain_quota=0, used_quota=1500000)
    body = client.get("/v1/balance", headers=auth(key)).get_json()
    assert body["remain_balance"] == body["balance"] == -1
    assert body["unlimited_quota"] is True
    assert body["used_balance"] == body["used"] == 3


def test_two_keys_of_one_user_report_their_own_quota(client, auth, create_user, create_token):
    owner = create_user(quota=1)
    first = create_token(user_id=owner, remain_quota=500000)
    second = create_token(user_id=owner, remain_quota=2500000)
    assert client.get("/v1/balance", headers=auth(first)).get_json()["remain_balance"] == 1
    assert client.get("/v1/balance", headers=auth(second)).get_json()["remain_balance"] == 5


@pytest.mark.parametrize("app_config", [{"BALANCE_UNIT": "tokens"}])
def test_token_balance_in_tokens_unit_is_the_raw_integer(client, auth, create_token):
    key = create_token(remain_quota=9007199254740993, used_quota=7)
    text = client.get("/v1/balance", headers=auth(key)).get_data(as_text=True)
    assert '"remain_balance":9007199254740993' in text
    assert '"used_balance":7' in text
    assert '"unit":"tokens"' in text


def test_head_request_answers_without_a_body(client, auth, create_token):
    key = create_token(remain_quota=1)
    response = client.head("/v1/balance", headers=auth(key))
    assert response.status_code == 200
    assert response.get_data() == b""


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_balance_read_leaves_no_lock_so_the_gateway_can_write_at_once(client, auth, create_token, database_url):
    """The service keeps its SQLite connection between requests; the gateway's next write must not wait for it."""
    key = create_token(remain_quota=5)
    assert client.get("/v1/balance", headers=auth(key)).status_code == 200
    gateway = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=0)
    try:
        gateway.execute("UPDATE tokens SET remain_quota = 4 WHERE key = ?", (key.removeprefix("sk-"),))
        gateway.commit()
    finally:
        gateway.close()
    assert client.get("/v1/balance", headers=auth(key)).get_json()["balance"] == Decimal("0.000008")
