"""GET /v1/user/balance reports the account behind the key, in the configured unit."""

from decimal import Decimal

import pytest

from balance_service.gateway.tables import ROLE_ADMIN, ROLE_ROOT


def test_user_balance_reports_quota_and_used_in_usd(client, auth, create_user, create_token):
    owner = create_user(quota=1234567, used_quota=250000)
    key = create_token(user_id=owner, remain_quota=1)
    response = client.get("/v1/user/balance", headers=auth(key))
    assert response.status_code == 200
    body = response.get_json()
    # The documented fields first and in the documented order, then unit, then the aliases.
    assert list(body) == ["success", "remain_balance", "used_balance", "unlimited_quota", "unit", "balance", "used"]
    assert body == {
        "success": True,
        "remain_balance": Decimal("2.469134"),
        "used_balance": Decimal("0.5"),
        "unlimited_quota": False,
        "unit": "USD",
        "balance": Decimal("2.469134"),
        "used": Decimal("0.5"),
    }


def test_amounts_are_written_as_exact_json_numbers(client, auth, create_user, create_token):
    key = create_token(user_id=create_user(quota=1, used_quota=3))
    text = client.get("/v1/user/balance", headers=auth(key)).get_data(as_text=True)
    assert '"remain_balance":0.000002' in text
    assert '"used_balance":0.000006' in text
    assert '"balance":0.000002' in text


@pytest.mark.parametrize(
    ("app_config", "balance", "used"),
    [
        ({"BALANCE_UNIT": "USD"}, Decimal("3"), Decimal("0.1")),
        ({"BALANCE_UNIT": "CNY"}, Decimal("21.9"), Decimal("0.73")),
        ({"BALANCE_UNIT": "tokens"}, 1500000, 50000),
    ],
)
def test_user_balance_follows_the_configured_unit(client, auth, create_user, create_token, app_config, balance, used):
    key = create_token(user_id=create_user(quota=1500000, used_quota=50000))
    body = client.get("/v1/user/balance", headers=auth(key)).get_json()
    assert body["remain_balance"] == balance
    assert body["used_balance"] == used
    assert body["unit"] == app_config["BALANCE_UNIT"]
    assert type(body["remain_balance"]) is type(balance)


@pytest.mark.parametrize("app_config", [{"BALANCE_UNIT": "CNY"}])
def test_the_gateway_quota_per_unit_and_exchange_rate(client, auth, create_user, create_token, options_table):
    options_table("QuotaPerUnit", "1000")
    options_table("USDExchangeRate", "7.1")
    key = create_token(user_id=create_user(quota=2500))
    assert client.get("/v1/user/balance", headers=auth(key)).get_json()["remain_balance"] == Decimal("17.75")


def test_the_key_own_quota_does_not_change_the_account_balance(client, auth, create_user, create_token):
    owner = create_user(quota=500000)
    key = create_token(user_id=owner, remain_quota=999999999, unlimited_quota=True)
    body = client.get("/v1/user/balance", headers=auth(key)).get_json()
    assert body["remain_balance"] == 1
    assert body["unlimited_quota"] is False


def test_each_key_sees_its_own_owner_only(client, auth, create_user, create_token):
    alice = create_token(user_id=create_user(quota=500000))
    bob = create_token(user_id=create_user(quota=1000000))
    assert client.get("/v1/user/balance", headers=auth(alice)).get_json()["remain_balance"] == 1
    assert client.get("/v1/user/balance", headers=auth(bob)).get_json()["remain_balance"] == 2


def test_overdrawn_account_shows_zero(client, auth, create_user, create_token):
    key = create_token(user_id=create_user(quota=-300, used_quota=500300))
    body = client.get("/v1/user/balance", headers=auth(key)).get_json()
    assert body["remain_balance"] == 0
    assert body["used_balance"] == Decimal("1.0006")


def test_accounts_are_limited_unless_their_role_is_configured_unlimited(client, auth, create_user, create_token):
    key = create_token(user_id=create_user(quota=500000, role=ROLE_ROOT))
    body = client.get("/v1/user/balance", headers=auth(key)).get_json()
    assert body["remain_balance"] == 1
    assert body["unlimited_quota"] is False


@pytest.mark.parametrize("app_config", [{"UNLIMITED_USER_ROLES": frozenset({ROLE_ROOT})}])
def test_roles_in_unlimited_user_roles_report_minus_one(client, auth, create_user, create_token):
    root = create_token(user_id=create_user(quota=500000, used_quota=1000000, role=ROLE_ROOT))
    admin = create_token(user_id=create_user(quota=500000, role=ROLE_ADMIN))
    root_body = client.get("/v1/user/balance", headers=auth(root)).get_json()
    admin_body = client.get("/v1/user/balance", headers=auth(admin)).get_json()
    assert root_body["remain_balance"] == -1
    assert root_body["unlimited_quota"] is True
    assert root_body["used_balance"] == 2
    assert admin_body["remain_balance"] == 1
    assert admin_body["unlimited_quota"] is False
