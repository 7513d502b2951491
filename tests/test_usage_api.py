"""``GET /v1/usage``: every day of a range with its net spend and requests, the models, and the forecast."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from balance_service.gateway.tables import TOKEN_EXPIRED, cache
from balance_service.usage.report import scope_forecast
from balance_service.usage.source import Scope
from tests.gateway_logs import CONSUME, REFUND, Log, at, seed_november, token_id

pytestmark = pytest.mark.log_stores

USAGE = "/v1/usage"
AROUND_NOVEMBER = "?start_date=2025-10-31&end_date=2025-12-02"


def usage(client, auth, key, query=""):
    response = client.get(USAGE + query, headers=auth(key))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def days_of(start: str, end: str, spent: dict[str, tuple[str, int]]) -> list[dict]:
    """Every day of [start, end) with zero spend, except those in ``spent`` (date → (amount, requests))."""
    first, after = date.fromisoformat(start), date.fromisoformat(end)
    out = []
    for n in range((after - first).days):
        day = (first + timedelta(days=n)).isoformat()
        used, requests = spent.get(day, ("0", 0))
        out.append({"date": day, "used": Decimal(used), "requests": requests})
    return out


def test_the_account_range_lists_every_day_with_its_net_spend_and_requests(client, auth, november, flavour):
    body = usage(client, auth, november.home, AROUND_NOVEMBER)
    new_api = flavour == "new-api"
    # November 1: 100000 + 50000 consumed (2 requests), 20000 refunded on new-api (not a request).
    spent = {
        "2025-10-31": ("0.5", 1),
        "2025-11-01": ("0.26" if new_api else "0.3", 2),
        "2025-11-15": ("0.002468", 1),
        "2025-11-20": ("0.01", 1),
        "2025-11-30": ("1", 1),
        "2025-12-01": ("0.6", 1),
    }
    assert body["days"] == days_of("2025-10-31", "2025-12-02", spent)
    assert len(body["days"]) == 32
    assert body["models"] == [
        {"model": "gpt-4o", "used": Decimal("2.27" if new_api else "2.31"), "requests": 5},
        {"model": "claude-3", "used": Decimal("0.1"), "requests": 1},
        {"model": "gpt-4o-mini", "used": Decimal("0.002468"), "requests": 1},
    ]
    assert (body["success"], body["scope"], body["unit"]) == (True, "account", "USD")
    assert (body["start_date"], body["end_date"]) == ("2025-10-31", "2025-12-02")
    assert body["total_used"] == Decimal("2.372468" if new_api else "2.412468")


def test_the_key_scope_counts_only_the_key(client, auth, november, flavour):
    body = usage(client, auth, november.work, AROUND_NOVEMBER + "&scope=key")
    spent = {
        "2025-10-31": ("0.5", 1),
        "2025-11-01": ("0.16", 1) if flavour == "new-api" else ("0.2", 1),
        "2025-11-15": ("0.002468", 1),
        "2025-11-30": ("1", 1),
        "2025-12-01": ("0.6", 1),
    }
    if flavour == "one-api":  # the account's other key named "work" cannot be told apart there
        spent["2025-11-20"] = ("0.01", 1)
    assert body["scope"] == "key"
    assert body["days"] == days_of("2025-10-31", "2025-12-02", spent)
    assert body["total_used"] == Decimal("2.262468" if flavour == "new-api" else "2.312468")


def test_a_key_of_another_user_is_never_counted(client, auth, november):
    bob = usage(client, auth, november.bob_work, AROUND_NOVEMBER + "&scope=key")
    assert bob["total_used"] == Decimal("1.555554")
    assert bob["models"] == [{"model": "gpt-4o", "used": Decimal("1.555554"), "requests": 1}]
    assert usage(client, auth, november.bob_work, AROUND_NOVEMBER)["total_used"] == Decimal("1.555554")


def test_a_refund_is_negative_spend_on_its_own_day_and_model(client, auth, create_user, create_token, gateway_tables):
    logs = gateway_tables().create_logs("new-api")
    owner = create_user()
    key = create_token(user_id=owner)
    logs.add(
        [
            Log(owner, at("2025-12-10 10:00:00"), CONSUME, 100000, "gpt-4o", "k", 1),
            Log(owner, at("2025-12-11 09:00:00"), REFUND, 40000, "gpt-4o", "k", 1),
            Log(owner, at("2025-12-11 09:30:00"), REFUND, 10000, "claude-3", "k", 1),
        ]
    )
    body = usage(client, auth, key, "?start_date=2025-12-10&end_date=2025-12-12")
    assert body["days"] == days_of("2025-12-10", "2025-12-12", {"2025-12-10": ("0.2", 1), "2025-12-11": ("-0.1", 0)})
    assert body["models"] == [
        {"model": "gpt-4o", "used": Decimal("0.12"), "requests": 1},
        {"model": "claude-3", "used": Decimal("-0.02"), "requests": 0},
    ]
    assert body["total_used"] == Decimal("0.1")


@pytest.mark.parametrize(("unit", "total", "text"), [("CNY", "17.319016", "17.319016"), ("tokens", 1186234, "1186234")])
def test_amounts_are_in_the_balance_unit_with_its_exact_decimals(
    make_app, auth, create_user, create_token, gateway_tables, unit, total, text
):
    client = make_app(BALANCE_UNIT=unit).test_client()
    november = seed_november(client.application, create_user, create_token, gateway_tables().create_logs("new-api"))
    response = client.get(USAGE + AROUND_NOVEMBER, headers=auth(november.home))
    body = response.get_json()
    assert body["unit"] == unit == client.get("/v1/user/balance", headers=auth(november.home)).get_json()["unit"]
    assert body["total_used"] == (Decimal(total) if unit == "CNY" else total)
    assert f'"total_used":{text},' in response.get_data(as_text=True)
    assert all(isinstance(day["used"], int if unit == "tokens" else Decimal) for day in body["days"])


def test_without_dates_the_range_is_the_last_30_days_up_to_tomorrow(client, auth, create_user, create_token, logs):
    today = datetime.now(UTC).date()
    owner = create_user()
    key = create_token(user_id=owner)
    midnight = datetime(today.year, today.month, today.day, tzinfo=UTC)
    logs.add(
        [
            Log(owner, int(midnight.timestamp()), CONSUME, 5000, "m", "k", 1),
            Log(owner, int((midnight - timedelta(days=29)).timestamp()), CONSUME, 10000, "m", "k", 1),
            Log(owner, int((midnight - timedelta(days=29)).timestamp()) - 1, CONSUME, 20000, "m", "k", 1),
        ]
    )
    body = usage(client, auth, key)
    assert body["start_date"] == (today - timedelta(days=29)).isoformat()
    assert body["end_date"] == (today + timedelta(days=1)).isoformat()
    assert len(body["days"]) == 30
    assert body["days"][0]["used"] == Decimal("0.02") and body["days"][-1]["used"] == Decimal("0.01")
    assert body["total_used"] == Decimal("0.03")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?start_date=2025-11-31", "start_date must be a date as YYYY-MM-DD, got '2025-11-31'"),
        ("?end_date=20251201", "end_date must be a date as YYYY-MM-DD, got '20251201'"),
        ("?start_date=2025-12-01&end_date=2025-11-01", "end_date must be after start_date"),
        ("?start_date=2025-11-01&end_date=2025-11-01", "end_date must be after start_date"),
        ("?start_date=2024-01-01&end_date=2025-01-02", "The range may cover at most 366 days"),
        ("?scope=token", "scope must be 'account' or 'key'"),
    ],
)
def test_a_bad_range_or_scope_is_refused_with_a_json_400(client, auth, november, query, message):
    response = client.get(USAGE + query, headers=auth(november.work))
    assert response.status_code == 400
    body = response.get_json()
    assert body["success"] is False and body["message"].startswith(message)


def test_a_leap_year_of_366_days_is_answered(client, auth, november):
    assert len(usage(client, auth, november.work, "?start_date=2024-01-01&end_date=2025-01-01")["days"]) == 366


def test_without_a_logs_table_the_history_is_unavailable(client, auth, create_token):
    response = client.get(USAGE, headers=auth(create_token()))
    assert response.status_code == 409
    assert response.get_json() == {
        "success": False,
        "message": "Usage history is not available: the gateway's logs table was not found",
    }


def test_with_consume_logging_off_the_history_is_unavailable(client, auth, november, logs):
    logs.set_options({"LogConsumeEnabled": "false", "QuotaPerUnit": "500000"})
    response = client.get(USAGE, headers=auth(november.work))
    assert response.status_code == 409
    assert "LogConsumeEnabled is false" in response.get_json()["message"]


CAPABILITIES = "/v1/capabilities"


def test_capabilities_say_whether_the_history_exists_so_a_page_need_not_provoke_the_409(
    client, auth, create_token, november, logs
):
    logs.set_options({"LogConsumeEnabled": "false"})
    off = client.get(CAPABILITIES, headers=auth(november.work)).get_json()["usage_history"]
    assert off == {
        "available": False,
        "reason": "consume_not_logged",
        "message": "the gateway does not log consumption (LogConsumeEnabled is false)",
    }
    assert client.get(USAGE, headers=auth(november.work)).status_code == 409  # what the page then does not ask
    logs.set_options({"LogConsumeEnabled": "true"})
    cache.clear()  # the options read above are otherwise trusted for a minute
    history = client.get(CAPABILITIES, headers=auth(november.work)).get_json()["usage_history"]
    assert history == {"available": True, "reason": None, "message": None}
    assert client.get(USAGE, headers=auth(november.work)).status_code == 200


def test_capabilities_without_a_logs_table_name_the_missing_table(make_app, auth, create_token):
    client = make_app(LOG_DATABASE_URL="sqlite://").test_client()  # a log database without the gateway's logs
    response = client.get(CAPABILITIES, headers=auth(create_token(), Origin="https://dash.example"))
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "https://dash.example")
    assert response.get_json()["usage_history"] == {
        "available": False,
        "reason": "no_logs_table",
        "message": "the gateway's logs table was not found",
    }


def test_capabilities_offer_the_alert_channels_this_service_can_send_through(make_app, auth, create_token):
    """E-mail only with the operator's mail server, chat and push only with schemes allowed: a page offers no more."""
    default = make_app().test_client()
    body = default.get(CAPABILITIES, headers=auth(create_token())).get_json()
    assert body["alerts"] == {"channels": ["webhook_url", "notify_url"], "test": True}
    assert default.get(CAPABILITIES).status_code == 401  # the key is needed, as for the usage itself
    mail = make_app(ALERT_SMTP_URL="mailto://alerts:pw@127.0.0.1:2525?from=alerts@example.org").test_client()
    offered = mail.get(CAPABILITIES, headers=auth(create_token())).get_json()["alerts"]["channels"]
    assert offered == ["webhook_url", "notify_url", "email"]


def test_browsers_of_other_origins_may_read_it(client, auth, november):
    response = client.get(USAGE, headers=auth(november.work, Origin="https://dash.example"))
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] in ("*", "https://dash.example")


def test_reading_usage_writes_nothing(client, auth, november, logs):
    before = logs.dump()
    for key in (november.work, november.home, november.bob_work):
        for scope in ("account", "key"):
            usage(client, auth, key, AROUND_NOVEMBER + "&scope=" + scope)
    assert logs.dump() == before


# --- the forecast ------------------------------------------------------------------------------------------------


@pytest.fixture
def last_week(app, create_user, create_token, logs):
    """The 7 whole days before today: 400000 consumed − 50000 refunded (new-api) = 350000, all through one key.

    700000 quota left on the account, 1400000 on the key; rows of today and of 8 days ago are outside the window.
    """
    today = datetime.now(UTC).date()
    midnight = int(datetime(today.year, today.month, today.day, tzinfo=UTC).timestamp())
    day = 86400
    owner = create_user(quota=700000)
    key = create_token(user_id=owner, name="k", remain_quota=1400000)
    unlimited = create_token(user_id=owner, name="u", unlimited_quota=True)
    spent = token_id(app, key)
    refund_type = REFUND if logs.flavour == "new-api" else CONSUME  # one-api has no refunds: one more consume
    logs.add(
        [
            Log(owner, midnight - 7 * day, CONSUME, 300000, "m", "k", spent),  # the window's first second
            Log(owner, midnight - 1, CONSUME, 100000, "m", "k", spent),  # its last second
            Log(owner, midnight - 3 * day, refund_type, 50000, "m", "k", spent),
            Log(owner, midnight, CONSUME, 999999, "m", "k", spent),  # today: not in the window
            Log(owner, midnight - 7 * day - 1, CONSUME, 888888, "m", "k", spent),  # 8 days ago: not either
        ]
    )
    return today, key, unlimited, owner


def expected_forecast(rate: str, days_left: str, today: date) -> dict:
    whole_days = int(Decimal(days_left))
    return {
        "daily_rate": Decimal(rate),
        "days_left": Decimal(days_left),
        "runs_out_on": (today + timedelta(days=whole_days)).isoformat(),
    }


def test_the_forecast_divides_the_balance_by_the_last_7_days_net_rate(client, auth, last_week, flavour):
    today, key, _, _ = last_week
    if flavour == "new-api":  # 350000 / 7 = 50000 a day = 0.1 USD; 700000 left: 14 days
        expected = expected_forecast("0.1", "14.0", today)
    else:  # 450000 / 7 a day = 0.128571 USD; 700000 * 7 / 450000 = 10.88… → 10.8
        expected = expected_forecast("0.128571", "10.8", today)
    response = client.get(USAGE, headers=auth(key))
    assert response.get_json()["forecast"] == expected
    assert f'"days_left":{expected["days_left"]},' in response.get_data(as_text=True)
    # A range that does not hold the window gives the same forecast (the window is then read on its own).
    assert usage(client, auth, key, "?start_date=2025-01-01&end_date=2025-01-02")["forecast"] == expected


def test_the_key_forecast_uses_the_key_balance(client, auth, last_week, flavour):
    today, key, _, _ = last_week
    forecast = usage(client, auth, key, "?scope=key")["forecast"]
    if flavour == "new-api":  # 1400000 / 50000 a day
        assert forecast == expected_forecast("0.1", "28.0", today)
    else:  # 1400000 * 7 / 450000 = 21.77…
        assert forecast == expected_forecast("0.128571", "21.7", today)


def test_unlimited_credit_has_a_rate_but_no_end(app, make_app, auth, last_week, logs):
    today, key, unlimited, owner = last_week
    yesterday = int(datetime(today.year, today.month, today.day, tzinfo=UTC).timestamp()) - 3600
    logs.add([Log(owner, yesterday, CONSUME, 70000, "m", "u", token_id(app, unlimited))])
    client = make_app().test_client()
    forecast = usage(client, auth, unlimited, "?scope=key")["forecast"]
    assert forecast == {"daily_rate": Decimal("0.02"), "days_left": None, "runs_out_on": None}
    root = make_app(UNLIMITED_USER_ROLES=frozenset({1})).test_client()  # role 1: every common user
    rate = Decimal("0.12") if logs.flavour == "new-api" else Decimal("0.148571")  # (350000 or 450000) + 70000, / 7
    assert usage(root, auth, key)["forecast"] == {"daily_rate": rate, "days_left": None, "runs_out_on": None}


def test_an_exhausted_balance_runs_out_today(app, client, auth, create_user, create_token, logs):
    today = datetime.now(UTC).date()
    yesterday = int(datetime(today.year, today.month, today.day, tzinfo=UTC).timestamp()) - 3600
    owner = create_user(quota=5000000)
    overdrawn = create_token(user_id=owner, name="x", remain_quota=-300)
    logs.add([Log(owner, yesterday, CONSUME, 70000, "m", "x", token_id(app, overdrawn))])
    assert usage(client, auth, overdrawn, "?scope=key")["forecast"] == expected_forecast("0.02", "0.0", today)
    assert usage(client, auth, overdrawn)["forecast"] == expected_forecast("0.02", "500.0", today)


def test_the_gateway_custom_currency_applies_to_the_amounts_and_the_daily_rate(client, auth, last_week, logs, flavour):
    logs.set_options(
        {
            "general_setting.quota_display_type": "CUSTOM",
            "general_setting.custom_currency_symbol": "pts",
            "general_setting.custom_currency_exchange_rate": "100",
        }
    )
    key = last_week[1]
    body = usage(client, auth, key, "?scope=key")
    assert body["unit"] == "pts"
    # 0.1 USD a day is 10 pts; one-api's 450000 quota over 7 days is 12.857142… pts.
    assert body["forecast"]["daily_rate"] == Decimal("10" if flavour == "new-api" else "12.857143")


@pytest.mark.parametrize("expiry", [{"status": TOKEN_EXPIRED}, {"expired_time": 1}])
def test_an_expired_key_can_still_read_its_usage(client, auth, create_user, create_token, logs, expiry):
    key = create_token(user_id=create_user(), **expiry)
    assert usage(client, auth, key)["success"] is True


def test_without_spend_the_forecast_has_no_end(client, auth, create_token, logs):
    forecast = usage(client, auth, create_token(remain_quota=5))["forecast"]
    assert forecast == {"daily_rate": Decimal(0), "days_left": None, "runs_out_on": None}


def test_an_alert_check_gets_the_same_forecast_outside_a_request(app, make_app, last_week, flavour):
    today, _, _, owner = last_week
    with app.app_context():
        result = scope_forecast(Scope(user_id=owner), 700000, False)
    assert (result.days_left, result.runs_out_on) == (
        (Decimal("14.0"), today + timedelta(days=14))
        if flavour == "new-api"
        else (Decimal("10.8"), today + timedelta(10))
    )
    with make_app(LOG_DATABASE_URL="sqlite://").app_context():  # no logs table there
        assert scope_forecast(Scope(user_id=owner), 700000, False) is None
