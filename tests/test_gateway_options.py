"""Units and flags come from the gateway's own ``options`` table, read as the gateway reads it.

Every test runs on SQLite, PostgreSQL and MariaDB (``key`` is a reserved word
in MySQL/MariaDB, so an unquoted query would fail there).
"""

from __future__ import annotations

import logging
import uuid
from decimal import Decimal

import pytest
from sqlalchemy.exc import OperationalError

from balance_service import create_app
from balance_service.extensions import db as _db
from balance_service.gateway.options import GatewayOptions, gateway_options, parse
from balance_service.gateway.tables import GatewayCache, cache

HOOK = "https://93.184.215.14/hook"  # a literal public address: creating an alert sends nothing


def balance(client, key, path="/v1/balance"):
    response = client.get(path, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_without_an_options_table_the_gateway_defaults_apply(client, create_token):
    body = balance(client, create_token(remain_quota=750000, used_quota=500000))
    assert (body["remain_balance"], body["used_balance"], body["unit"]) == (Decimal("1.5"), 1, "USD")


def test_quota_per_unit_comes_from_the_gateway(client, options_table, create_token):
    options_table("QuotaPerUnit", "1000")
    body = balance(client, create_token(remain_quota=2500, used_quota=500))
    assert (body["remain_balance"], body["used_balance"], body["unit"]) == (Decimal("2.5"), Decimal("0.5"), "USD")


def test_cny_display_uses_the_gateway_exchange_rate(client, options_table, create_user, create_token):
    options_table("general_setting.quota_display_type", "CNY")
    options_table("USDExchangeRate", "7.1")
    key = create_token(user_id=create_user(quota=1000000), remain_quota=500000)
    assert balance(client, key)["remain_balance"] == Decimal("7.1")
    body = balance(client, key, "/v1/user/balance")
    assert (body["remain_balance"], body["unit"]) == (Decimal("14.2"), "CNY")


def test_tokens_display_shows_raw_quota(client, options_table, create_token):
    options_table("general_setting.quota_display_type", "TOKENS")
    text = client.get("/balance", headers={"Authorization": f"Bearer {create_token(remain_quota=123456789)}"}).text
    assert '"remain_balance":123456789,' in text
    assert '"unit":"tokens"' in text


def test_custom_currency_is_usd_times_its_rate_under_its_symbol(client, options_table, create_token):
    options_table("general_setting.quota_display_type", "CUSTOM")
    options_table("general_setting.custom_currency_symbol", "€")
    options_table("general_setting.custom_currency_exchange_rate", "0.9")
    body = balance(client, create_token(remain_quota=1000000, used_quota=250000))
    assert (body["remain_balance"], body["used_balance"], body["unit"]) == (Decimal("1.8"), Decimal("0.45"), "€")
    assert body["balance"] == body["remain_balance"]


def test_custom_currency_without_symbol_or_rate_uses_the_gateway_defaults(client, options_table, create_token):
    options_table("general_setting.quota_display_type", "CUSTOM")
    body = balance(client, create_token(remain_quota=500000))
    assert (body["remain_balance"], body["unit"]) == (1, "¤")


def test_alert_thresholds_are_read_and_shown_in_the_custom_currency(make_app, options_table, create_token, auth):
    options_table("general_setting.quota_display_type", "CUSTOM")
    options_table("general_setting.custom_currency_symbol", "pts")
    options_table("general_setting.custom_currency_exchange_rate", "100")
    client = make_app().test_client()
    created = client.post(
        "/v1/user/balance/alerts", json={"threshold": Decimal("2.5"), "webhook_url": HOOK}, headers=auth(create_token())
    )
    assert created.status_code == 201, created.get_json()
    alert = created.get_json()["alert"]
    # 2.5 pts is 0.025 USD, 12500 quota units; shown back exactly as given.
    assert (alert["threshold"], alert["unit"]) == (Decimal("2.5"), "pts")


def test_billing_stays_usd_at_the_gateway_quota_per_unit(client, options_table, create_token, auth):
    options_table("QuotaPerUnit", "1000")
    options_table("general_setting.quota_display_type", "CNY")
    key = create_token(remain_quota=3000, used_quota=1000)
    subscription = client.get("/dashboard/billing/subscription", headers=auth(key)).get_json()
    usage = client.get("/dashboard/billing/usage", headers=auth(key)).get_json()
    assert (subscription["hard_limit_usd"], usage["total_usage"]) == (4, 100)


def test_one_api_display_in_currency_false_means_raw_quota(client, options_table, create_token):
    options_table("DisplayInCurrencyEnabled", "false")
    body = balance(client, create_token(remain_quota=42, used_quota=7))
    assert (body["remain_balance"], body["used_balance"], body["unit"]) == (42, 7, "tokens")


def test_new_api_display_type_wins_over_the_legacy_flag(client, options_table, create_token):
    options_table("DisplayInCurrencyEnabled", "false")
    options_table("general_setting.quota_display_type", "USD")
    assert balance(client, create_token(remain_quota=500000))["unit"] == "USD"


def test_balance_unit_overrides_the_display_type_and_the_table_gives_the_rates(
    make_app, options_table, create_token, monkeypatch
):
    options_table("QuotaPerUnit", "1000")
    options_table("USDExchangeRate", "7.1")
    options_table("general_setting.quota_display_type", "TOKENS")
    key = create_token(remain_quota=2000)
    monkeypatch.setenv("BALANCE_UNIT", "CNY")
    body = balance(make_app().test_client(), key)
    assert (body["remain_balance"], body["unit"]) == (Decimal("14.2"), "CNY")  # 2 USD at the table's rate


@pytest.mark.parametrize("value", ["1", "True", "TRUE", "t", " true", "yes"])
def test_an_enabled_flag_other_than_the_exact_text_true_is_off_as_in_the_gateway(
    client, options_table, create_token, value
):
    options_table("DisplayInCurrencyEnabled", value)
    body = balance(client, create_token(remain_quota=42))
    assert (body["remain_balance"], body["unit"]) == (42, "tokens")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("QuotaPerUnit", "abc"),
        ("QuotaPerUnit", "0"),
        ("QuotaPerUnit", "-500000"),
        ("QuotaPerUnit", "NaN"),
        ("general_setting.quota_display_type", "EUR"),
    ],
)
def test_a_malformed_value_logs_a_warning_and_the_default_is_used(
    client, options_table, create_token, caplog, name, value
):
    options_table(name, value)
    with caplog.at_level(logging.WARNING, logger="balance_service"):
        body = balance(client, create_token(remain_quota=500000))
    assert (body["remain_balance"], body["unit"]) == (1, "USD")
    assert any(name in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records), caplog.text


def test_a_malformed_custom_rate_falls_back_to_one(client, options_table, create_token, caplog):
    options_table("general_setting.quota_display_type", "CUSTOM")
    options_table("general_setting.custom_currency_exchange_rate", "0")
    assert balance(client, create_token(remain_quota=500000))["remain_balance"] == 1
    assert "custom_currency_exchange_rate" in caplog.text


def test_a_changed_row_shows_once_a_minute_has_passed(client, options_table, create_token, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(cache, "clock", lambda: now[0])
    key = create_token(remain_quota=1000000)
    assert balance(client, key)["remain_balance"] == 2
    options_table("QuotaPerUnit", "1000000")
    now[0] += 59
    assert balance(client, key)["remain_balance"] == 2  # still the cached value
    now[0] += 2
    assert balance(client, key)["remain_balance"] == 1


@pytest.mark.parametrize("with_table", [True, False])
def test_a_balance_request_is_one_statement_when_the_options_are_cached(
    client, create_token, count_statements, request, with_table
):
    if with_table:
        request.getfixturevalue("options_table")("QuotaPerUnit", "500000")
    key = create_token(remain_quota=5)
    client.get("/v1/balance", headers={"Authorization": f"Bearer {key}"})  # warm-up: layout and options
    with count_statements() as statements:
        for path in ("/v1/user/balance", "/balance", "/dashboard/billing/usage"):
            assert client.get(path, headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert len(statements) == 3, statements


def test_top_up_in_usd_uses_the_gateway_quota_per_unit(app, options_table, create_user):
    options_table("QuotaPerUnit", "1000")
    create_user(username="erin")
    result = app.test_cli_runner().invoke(args=["top-up", "erin", "2.5", "--unit", "USD"])
    assert result.exit_code == 0, result.output
    assert "now has 2500 quota" in result.output


def test_the_flags_for_other_endpoints_are_read_with_the_gateway_defaults(app, options_table):
    with app.app_context():
        assert (gateway_options().display_token_stat, gateway_options().log_consume) == (True, True)
    options_table("DisplayTokenStatEnabled", "false")
    options_table("LogConsumeEnabled", "False")
    cache.clear()  # a cold cache, as in a freshly started worker
    with app.app_context():
        options = gateway_options()
    assert (options.display_token_stat, options.log_consume) == (False, False)


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ({}, GatewayOptions()),
        ({"general_setting.quota_display_type": " cny "}, GatewayOptions(display_type="CNY")),
        ({"DisplayInCurrencyEnabled": "0"}, GatewayOptions(display_type="TOKENS")),
        ({"DisplayInCurrencyEnabled": "true"}, GatewayOptions()),
        ({"DisplayInCurrencyEnabled": "T"}, GatewayOptions(display_type="TOKENS")),
        (
            {"DisplayTokenStatEnabled": "1", "LogConsumeEnabled": "yes"},
            GatewayOptions(display_token_stat=False, log_consume=False),
        ),
        ({"QuotaPerUnit": "500000.000000"}, GatewayOptions()),
        ({"general_setting.custom_currency_symbol": "  "}, GatewayOptions()),
    ],
)
def test_rows_are_read_as_the_gateway_reads_them(rows, expected):
    assert parse(rows) == expected


def test_a_failed_re_read_keeps_the_values_read_before(caplog):
    now = [0.0]
    cache = GatewayCache(10, clock=lambda: now[0])
    engine = type("Engine", (), {})()  # anything the cache can hold a weak reference to
    first = GatewayOptions(quota_per_unit=Decimal(1000))
    assert cache.get(engine, "options", lambda: first) is first

    def unreachable():
        raise OperationalError("SELECT", {}, ConnectionError("database went away"))

    now[0] = 11
    assert cache.get(engine, "options", unreachable) is first
    assert "keeping the last one" in caplog.text
    with pytest.raises(OperationalError):
        GatewayCache(10).get(engine, "options", unreachable)  # nothing read before: the request gets the usual 503


@pytest.fixture
def role_without_options(database_url, backend):
    """A database login that may read ``users`` and ``tokens`` only, as earlier versions' README granted.

    Yields a database URL for it; the login is dropped afterwards.
    """
    from sqlalchemy.engine import make_url

    from tests.helpers import mariadb_admin_connection

    name = f"ro_{uuid.uuid4().hex[:12]}"
    url = make_url(database_url)
    if backend == "postgresql":
        import psycopg2

        def run(*statements):
            conn = psycopg2.connect(host=url.host, port=url.port or 5432, user=url.username, dbname=url.database)
            conn.autocommit = True
            with conn.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)
            conn.close()

        run(f"CREATE ROLE {name} LOGIN", f"GRANT SELECT ON users, tokens TO {name}")
        yield url.set(username=name).render_as_string(hide_password=False)
        run(f"DROP OWNED BY {name}", f"DROP ROLE {name}")
        return
    hosts = ("localhost", "127.0.0.1", "%")
    conn = mariadb_admin_connection()
    with conn.cursor() as cur:
        for host in hosts:
            cur.execute(f"CREATE USER '{name}'@'{host}'")
            for table in ("users", "tokens"):
                cur.execute(f"GRANT SELECT ON `{url.database}`.`{table}` TO '{name}'@'{host}'")
    yield url.set(username=name, password=None).render_as_string(hide_password=False)
    with conn.cursor() as cur:
        for host in hosts:
            cur.execute(f"DROP USER '{name}'@'{host}'")
    conn.close()


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_a_role_that_may_not_read_options_gets_the_gateway_defaults_not_a_503(
    app, options_table, create_token, role_without_options, caplog
):
    options_table("general_setting.quota_display_type", "CNY")
    key = create_token(remain_quota=750000, used_quota=500000)
    restricted = create_app({"TESTING": True, "DATABASE_URL": role_without_options, "AUTH_FAILURE_LIMIT": None})
    try:
        with caplog.at_level(logging.WARNING, logger="balance_service"):
            for path in ("/v1/balance", "/balance"):
                body = balance(restricted.test_client(), key, path)
                assert (body["remain_balance"], body["used_balance"], body["unit"]) == (Decimal("1.5"), 1, "USD")
        assert "may not read the gateway's options table" in caplog.text
    finally:
        with restricted.app_context():
            _db.engine.dispose()
