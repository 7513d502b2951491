"""OpenAI-style billing endpoints: what NextChat / ChatGPT-Next-Web and one-api clients read."""

import time
from decimal import Decimal

import pytest

from balance_service.config import ConfigError, Settings
from balance_service.gateway.money import Currency
from balance_service.gateway.tables import ROLE_ROOT, TOKEN_DISABLED, USER_DISABLED

SUBSCRIPTION_PATHS = ["/v1/dashboard/billing/subscription", "/dashboard/billing/subscription"]
USAGE_PATHS = ["/v1/dashboard/billing/usage", "/dashboard/billing/usage"]
ALL_PATHS = SUBSCRIPTION_PATHS + USAGE_PATHS
ORIGIN = "https://chat.example"


def client_balance(client, headers):
    """The balance a NextChat-like client computes: hard_limit_usd - total_usage / 100."""
    subscription = client.get(SUBSCRIPTION_PATHS[0], headers=headers).get_json()
    usage = client.get(USAGE_PATHS[0], headers=headers).get_json()
    return subscription["hard_limit_usd"] - usage["total_usage"] / 100


@pytest.mark.parametrize("path", SUBSCRIPTION_PATHS)
def test_subscription_reports_the_key_total_credit_in_usd(client, auth, create_token, path):
    key = create_token(remain_quota=750000, used_quota=250000)
    response = client.get(path, headers=auth(key))
    assert response.status_code == 200
    assert response.get_json() == {
        "success": True,
        "object": "billing_subscription",
        "has_payment_method": True,
        "soft_limit_usd": Decimal(2),
        "hard_limit_usd": Decimal(2),
        "system_hard_limit_usd": Decimal(2),
        "access_until": 0,
    }


@pytest.mark.parametrize("path", USAGE_PATHS)
def test_usage_reports_the_key_used_quota_in_cents(client, auth, create_token, path):
    key = create_token(remain_quota=750000, used_quota=250000)
    response = client.get(path, headers=auth(key))
    assert response.status_code == 200
    assert response.get_json() == {"success": True, "object": "list", "total_usage": Decimal(50)}


def test_amounts_are_exact_json_numbers(client, auth, create_token):
    key = create_token(remain_quota=1, used_quota=3)
    subscription = client.get(SUBSCRIPTION_PATHS[0], headers=auth(key)).get_data(as_text=True)
    usage = client.get(USAGE_PATHS[0], headers=auth(key)).get_data(as_text=True)
    assert '"hard_limit_usd":0.000008' in subscription
    assert '"total_usage":0.0006' in usage


def test_client_computed_balance_equals_the_balance_endpoint(client, auth, create_token):
    key = create_token(remain_quota=1234567, used_quota=7654321)
    balance = client.get("/v1/balance", headers=auth(key)).get_json()["balance"]
    assert client_balance(client, auth(key)) == balance == Decimal("2.469134")


def test_with_token_stats_off_the_account_is_reported_not_the_key(
    client, auth, create_user, create_token, options_table
):
    options_table("DisplayTokenStatEnabled", "false")
    key = create_token(user_id=create_user(quota=1500000, used_quota=500000), remain_quota=1, used_quota=1)
    subscription = client.get(SUBSCRIPTION_PATHS[0], headers=auth(key)).get_json()
    usage = client.get(USAGE_PATHS[0], headers=auth(key)).get_json()
    assert subscription["hard_limit_usd"] == 4
    assert usage["total_usage"] == 100
    assert client_balance(client, auth(key)) == client.get("/v1/user/balance", headers=auth(key)).get_json()["balance"]


def test_by_default_the_key_is_reported_not_the_account(client, auth, create_user, create_token):
    key = create_token(user_id=create_user(quota=99999999, used_quota=99999999), remain_quota=500000)
    assert client.get(SUBSCRIPTION_PATHS[1], headers=auth(key)).get_json()["hard_limit_usd"] == 1
    assert client.get(USAGE_PATHS[1], headers=auth(key)).get_json()["total_usage"] == 0


def test_unlimited_key_reports_the_large_limit_and_its_real_usage(client, auth, create_token):
    key = create_token(unlimited_quota=True, remain_quota=0, used_quota=1500000)
    subscription = client.get(SUBSCRIPTION_PATHS[0], headers=auth(key)).get_json()
    assert subscription["hard_limit_usd"] == subscription["soft_limit_usd"] == Decimal(100000000)
    assert subscription["system_hard_limit_usd"] == Decimal(100000000)
    assert client.get(USAGE_PATHS[0], headers=auth(key)).get_json()["total_usage"] == 300
    assert client_balance(client, auth(key)) == Decimal(99999997)


def test_an_account_is_unlimited_only_for_configured_roles(make_app, auth, create_user, create_token, options_table):
    options_table("DisplayTokenStatEnabled", "false")
    client = make_app(UNLIMITED_USER_ROLES=frozenset({ROLE_ROOT})).test_client()
    root_key = create_token(user_id=create_user(quota=500000, role=ROLE_ROOT))
    unlimited_key_of_common_user = create_token(user_id=create_user(quota=500000), unlimited_quota=True)
    root = client.get(SUBSCRIPTION_PATHS[0], headers=auth(root_key)).get_json()
    common = client.get(SUBSCRIPTION_PATHS[0], headers=auth(unlimited_key_of_common_user)).get_json()
    assert root["hard_limit_usd"] == 100000000
    assert common["hard_limit_usd"] == 1


def test_a_key_ignores_unlimited_roles(make_app, auth, create_user, create_token):
    client = make_app(UNLIMITED_USER_ROLES=frozenset({ROLE_ROOT})).test_client()
    key = create_token(user_id=create_user(role=ROLE_ROOT), remain_quota=500000)
    assert client.get(SUBSCRIPTION_PATHS[0], headers=auth(key)).get_json()["hard_limit_usd"] == 1


def test_overdrawn_key_shows_zero_balance_never_a_negative_limit(client, auth, create_token):
    overdrawn = create_token(remain_quota=-300, used_quota=500300)
    deep = create_token(remain_quota=-5000000, used_quota=0)
    assert client.get(SUBSCRIPTION_PATHS[0], headers=auth(overdrawn)).get_json()["hard_limit_usd"] == Decimal("1.0006")
    assert client_balance(client, auth(overdrawn)) == 0
    assert client.get(SUBSCRIPTION_PATHS[0], headers=auth(deep)).get_json()["hard_limit_usd"] == 0
    assert client_balance(client, auth(deep)) == 0


def test_access_until_is_the_key_expiry(client, auth, create_token):
    expires = int(time.time()) + 3600
    key = create_token(remain_quota=1, expired_time=expires)
    assert client.get(SUBSCRIPTION_PATHS[1], headers=auth(key)).get_json()["access_until"] == expires


def test_access_until_of_a_never_expiring_key_is_zero(client, auth, create_token):
    key = create_token(remain_quota=1, expired_time=-1)
    assert client.get(SUBSCRIPTION_PATHS[0], headers=auth(key)).get_json()["access_until"] == 0


def test_with_token_stats_off_access_until_is_zero_as_the_account_does_not_expire(
    client, auth, create_token, options_table
):
    options_table("DisplayTokenStatEnabled", "false")
    key = create_token(remain_quota=1, expired_time=int(time.time()) + 3600)
    assert client.get(SUBSCRIPTION_PATHS[0], headers=auth(key)).get_json()["access_until"] == 0


@pytest.mark.parametrize("value", ["1", "True", " true", "yes"])
def test_token_stats_are_on_only_for_the_exact_value_true_as_in_the_gateway(
    make_app, auth, create_user, create_token, options_table, value
):
    options_table("DisplayTokenStatEnabled", value)
    key = create_token(user_id=create_user(quota=1500000, used_quota=500000), remain_quota=1, used_quota=1)
    assert make_app().test_client().get(SUBSCRIPTION_PATHS[0], headers=auth(key)).get_json()["hard_limit_usd"] == 4


@pytest.mark.parametrize("unit", ["CNY", "tokens"])
def test_amounts_stay_usd_and_cents_whatever_the_balance_unit(make_app, auth, create_token, unit):
    client = make_app(BALANCE_UNIT=unit).test_client()
    key = create_token(remain_quota=500000, used_quota=500000)
    assert client.get(SUBSCRIPTION_PATHS[0], headers=auth(key)).get_json()["hard_limit_usd"] == 2
    assert client.get(USAGE_PATHS[0], headers=auth(key)).get_json()["total_usage"] == 100


def test_the_gateway_quota_per_unit_is_honoured(client, auth, create_token, options_table):
    options_table("QuotaPerUnit", "1000")
    key = create_token(remain_quota=2500, used_quota=10)
    assert client.get(SUBSCRIPTION_PATHS[0], headers=auth(key)).get_json()["hard_limit_usd"] == Decimal("2.51")
    assert client.get(USAGE_PATHS[0], headers=auth(key)).get_json()["total_usage"] == 1


def test_date_range_without_gateway_logs_reports_the_lifetime_usage(client, auth, create_token):
    """No ``logs`` table here (a standalone install): ranged usage falls back to lifetime (test_usage_billing.py)."""
    key = create_token(remain_quota=1, used_quota=500000)
    plain = client.get(USAGE_PATHS[0], headers=auth(key))
    dated = client.get(USAGE_PATHS[0] + "?start_date=2024-01-01&end_date=2024-02-01", headers=auth(key))
    assert dated.status_code == 200
    assert dated.get_json() == plain.get_json()


@pytest.mark.parametrize("path", ALL_PATHS)
def test_missing_or_unknown_key_is_refused_with_401(client, path):
    for headers in ({}, {"Authorization": "Bearer sk-" + "n" * 48}):
        response = client.get(path, headers=headers)
        assert response.status_code == 401
        assert response.get_json()["success"] is False


@pytest.mark.parametrize("path", ALL_PATHS)
def test_disabled_keys_and_disabled_owners_are_refused_but_expired_keys_can_read(
    client, auth, create_user, create_token, path
):
    disabled = create_token(status=TOKEN_DISABLED, remain_quota=1)
    expired = create_token(expired_time=int(time.time()) - 1, remain_quota=1)
    blocked_owner = create_token(user_id=create_user(status=USER_DISABLED), remain_quota=1)
    orphan = create_token(user_id=987654321, remain_quota=1)
    assert client.get(path, headers=auth(disabled)).status_code == 401
    assert client.get(path, headers=auth(expired)).status_code == 200
    assert client.get(path, headers=auth(blocked_owner)).status_code == 403
    assert client.get(path, headers=auth(orphan)).status_code == 404


@pytest.mark.parametrize("path", ALL_PATHS)
def test_browser_clients_get_cors_headers(client, auth, create_token, path):
    preflight = client.options(
        path,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] in ("*", ORIGIN)
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
    answer = client.get(path, headers=auth(create_token(remain_quota=1), Origin=ORIGIN))
    refusal = client.get(path, headers={"Origin": ORIGIN})
    assert answer.status_code == 200
    assert refusal.status_code == 401
    assert answer.headers["Access-Control-Allow-Origin"] in ("*", ORIGIN)
    assert refusal.headers["Access-Control-Allow-Origin"] in ("*", ORIGIN)


def test_billing_request_is_one_sql_statement(client, auth, create_token, count_statements):
    key = create_token(remain_quota=5)
    client.get("/v1/balance", headers=auth(key))  # warm-up: reads the table layout once
    with count_statements() as statements:
        assert client.get(SUBSCRIPTION_PATHS[0], headers=auth(key)).status_code == 200
    assert len(statements) == 1, statements


def test_billing_source_set_stops_start_up_naming_the_gateway_option_that_replaces_it():
    with pytest.raises(ConfigError, match="BILLING_SOURCE is no longer read: .*DisplayTokenStatEnabled"):
        Settings.from_env({"BILLING_SOURCE": "user"})


QPU = Decimal(500000)


@pytest.mark.parametrize(
    ("remaining", "used", "unlimited", "limit", "cents"),
    [
        (750000, 250000, False, Decimal("2.000000"), Decimal("50.0000")),
        (1, 0, False, Decimal("0.000002"), Decimal("0.0000")),
        (1, 1, False, Decimal("0.000004"), Decimal("0.0002")),
        (0, 0, False, Decimal("0"), Decimal("0")),
        (-300, 500300, False, Decimal("1.000600"), Decimal("100.0600")),
        (-1, -1, False, Decimal("0"), Decimal("0")),
        (123, 1500000, True, Decimal(100000000), Decimal("300.0000")),
        (9223372036854775807, 0, False, Decimal("18446744073709.551614"), Decimal("0")),
    ],
)
def test_billing_amounts_are_exact(remaining, used, unlimited, limit, cents):
    got_limit, got_cents = Currency("USD", QPU).billing(remaining, used, unlimited)
    assert (got_limit, got_cents) == (limit, cents)
    assert got_limit >= 0 and got_cents >= 0


def test_billing_limit_minus_usage_is_the_rounded_balance_without_drift():
    # 2 quota at 3,000,000 per dollar is 0.000000666… USD. Rounding the sum (0.0000013…) would give a
    # limit of 0.000001 and a client balance of 0; rounding each part first keeps the balance endpoint's figure.
    limit, cents = Currency("USD", Decimal(3000000)).billing(2, 2, False)
    assert (limit, cents) == (Decimal("0.000002"), Decimal("0.0001"))
    assert limit - cents / 100 == Decimal("0.000001")
