"""Date-ranged billing usage: ``total_usage`` is the net spend of [start_date, end_date) from the gateway's logs.

The logs table is laid out as new-api and as one-api create it (tests/gateway_logs.py), with consume,
refund, top-up, manage and error rows around the October → November → December boundaries.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from balance_service.gateway.tables import cache
from tests.gateway_logs import CONSUME, Log, at, token_id

pytestmark = pytest.mark.log_stores

USAGE = "/v1/dashboard/billing/usage"
NOVEMBER = "?start_date=2025-11-01&end_date=2025-12-01"


def cents(client, auth, key, query="", path=USAGE):
    response = client.get(path + query, headers=auth(key))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["success"] is True and body["object"] == "list"
    return body["total_usage"]


def test_a_month_is_the_net_spend_of_the_key_in_cents(client, auth, november, flavour):
    # new-api: 100000 + 1234 + 500000 - 20000 refunded; one-api: the two keys named "work" together, no refunds.
    expected = Decimal("116.2468") if flavour == "new-api" else Decimal("121.2468")
    assert cents(client, auth, november.work, NOVEMBER) == expected
    assert cents(client, auth, november.home, NOVEMBER) == Decimal("10.0000")
    assert cents(client, auth, november.work2, NOVEMBER) == (Decimal(1) if flavour == "new-api" else expected)


def test_both_paths_answer_the_same_figure(client, auth, november):
    assert cents(client, auth, november.home, NOVEMBER) == cents(
        client, auth, november.home, NOVEMBER, path="/dashboard/billing/usage"
    )


def test_start_is_inclusive_and_end_exclusive_in_utc_days(client, auth, november):
    assert cents(client, auth, november.work, "?start_date=2025-10-31&end_date=2025-11-01") == 50
    assert cents(client, auth, november.work, "?start_date=2025-12-01&end_date=2025-12-02") == 60
    assert cents(client, auth, november.work, "?start_date=2025-11-02&end_date=2025-11-15") == 0


def test_exact_cents_are_written_as_exact_json_numbers(client, auth, november):
    text = client.get(USAGE + "?start_date=2025-11-15&end_date=2025-11-16", headers=auth(november.work)).get_data(
        as_text=True
    )
    assert '"total_usage":0.2468' in text


def test_with_token_stats_off_the_net_spend_of_the_account_is_reported(make_app, auth, november, flavour, logs):
    logs.set_options({"DisplayTokenStatEnabled": "false"})
    client = make_app().test_client()
    expected = Decimal("127.2468") if flavour == "new-api" else Decimal("131.2468")
    assert cents(client, auth, november.home, NOVEMBER) == expected
    assert cents(client, auth, november.bob_work, NOVEMBER) == Decimal("155.5554")


def test_a_key_of_another_user_with_the_same_name_is_never_counted(client, auth, november):
    assert cents(client, auth, november.bob_work, NOVEMBER) == Decimal("155.5554")
    assert cents(client, auth, november.bob_work, "?start_date=2025-11-02&end_date=2026-01-01") == 0


def test_without_dates_the_usage_stays_the_lifetime_figure(client, auth, november):
    assert cents(client, auth, november.work) == Decimal("1777.7776")  # used_quota 8888888 of the key
    assert cents(client, auth, november.work, "?start_date=&end_date=") == Decimal("1777.7776")


def test_when_consume_logging_is_off_the_usage_stays_the_lifetime_figure(client, auth, november, logs):
    logs.set_options({"LogConsumeEnabled": "false"})
    assert cents(client, auth, november.work, NOVEMBER) == Decimal("1777.7776")
    logs.set_options({"LogConsumeEnabled": "true"})
    cache.clear()  # the gateway's options are trusted for a minute: read them again now
    assert cents(client, auth, november.work, NOVEMBER) != Decimal("1777.7776")


def test_without_a_logs_table_the_usage_stays_the_lifetime_figure(client, auth, create_token):
    key = create_token(remain_quota=1, used_quota=500000)
    assert cents(client, auth, key, NOVEMBER) == 100


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?start_date=2025-11-01&end_date=tomorrow", "end_date must be a date as YYYY-MM-DD, got 'tomorrow'"),
        ("?start_date=2025-13-01&end_date=2025-12-01", "start_date must be a date as YYYY-MM-DD, got '2025-13-01'"),
        ("?start_date=2025-1-5&end_date=2025-12-01", "start_date must be a date as YYYY-MM-DD, got '2025-1-5'"),
        ("?start_date=2025-11-01", "Give both start_date and end_date (YYYY-MM-DD), or neither for lifetime usage"),
        ("?end_date=2025-11-01", "Give both start_date and end_date (YYYY-MM-DD), or neither for lifetime usage"),
        (
            "?start_date=2025-12-01&end_date=2025-11-01",
            "end_date must be after start_date (start_date is included, end_date is not)",
        ),
        (
            "?start_date=2025-11-01&end_date=2025-11-01",
            "end_date must be after start_date (start_date is included, end_date is not)",
        ),
    ],
)
def test_a_malformed_or_reversed_range_is_refused_with_a_json_400(client, auth, november, query, message):
    response = client.get(USAGE + query, headers=auth(november.work))
    assert response.status_code == 400
    assert response.get_json() == {"success": False, "message": message}


def test_one_api_key_names_are_compared_exactly(app, client, auth, create_user, create_token, gateway_tables):
    """MariaDB compares strings without case by default: a key named "Work" must not count "work" rows."""
    logs = gateway_tables().create_logs("one-api")
    owner = create_user()
    upper, lower = create_token(user_id=owner, name="Work"), create_token(user_id=owner, name="work")
    logs.add(
        [
            Log(owner, at("2025-11-03 10:00:00"), CONSUME, 5000, "gpt-4o", "Work"),
            Log(owner, at("2025-11-03 11:00:00"), CONSUME, 15000, "gpt-4o", "work"),
            Log(owner, at("2025-11-03 12:00:00"), CONSUME, 25000, "gpt-4o", "work "),
        ]
    )
    assert cents(client, auth, upper, NOVEMBER) == 1
    assert cents(client, auth, lower, NOVEMBER) == 3
    assert token_id(app, upper) != token_id(app, lower)


def test_ranged_usage_writes_nothing(client, auth, november, logs):
    logs.set_options({"LogConsumeEnabled": "true"})
    before = logs.dump()
    for key in (november.work, november.home, november.bob_work):
        cents(client, auth, key, NOVEMBER)
    assert logs.dump() == before
