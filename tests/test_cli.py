"""Operator commands through Flask's CLI runner, against the real database."""

from __future__ import annotations

import json
import re
import time
from decimal import Decimal

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from balance_service import console
from balance_service.extensions import db
from balance_service.gateway.tables import LOG_CONSUME, LOG_REFUND, TOKEN_ENABLED, TOKEN_EXHAUSTED, Token, User, logs
from balance_service.version import __version__
from tests.gateway_logs import Log

KEY_LINE = re.compile(r"^sk-[A-Za-z0-9]{48}$", re.M)


@pytest.fixture
def cli(app):
    runner = app.test_cli_runner()

    def invoke(*args):
        return runner.invoke(args=list(args))

    return invoke


def _user(app, username):
    with app.app_context():
        return db.session.execute(db.select(User).where(User.username == username)).scalar_one()


def _token(app, token_id):
    with app.app_context():
        return db.session.get(Token, token_id)


def test_init_db_creates_missing_tables_and_keeps_existing_rows(app, cli, create_user):
    create_user(username="kept", quota=5)
    result = cli("init-db")
    assert result.exit_code == 0, result.output
    assert "tables ready" in result.output
    assert _user(app, "kept").quota == 5


def test_create_user_then_token_prints_a_working_key_once(client, cli):
    assert cli("create-user", "carol", "--quota", "1500000").exit_code == 0
    result = cli("create-token", "carol", "--quota", "250000", "--name", "laptop")
    assert result.exit_code == 0, result.output
    keys = KEY_LINE.findall(result.output)
    assert len(keys) == 1
    auth = {"Authorization": f"Bearer {keys[0]}"}
    assert client.get("/v1/user/balance", headers=auth).get_json()["balance"] == 3
    assert client.get("/v1/balance", headers=auth).get_json()["balance"] == 0.5


def test_create_token_can_be_unlimited_and_expire(client, cli, app):
    cli("create-user", "dave")
    unlimited = KEY_LINE.findall(cli("create-token", "dave", "--unlimited").output)[0]
    assert client.get("/v1/balance", headers={"Authorization": f"Bearer {unlimited}"}).get_json()["balance"] == -1
    before = int(time.time())
    expiring = cli("create-token", "dave", "--expires", "2d")
    assert expiring.exit_code == 0
    with app.app_context():
        newest = db.session.execute(db.select(Token).order_by(Token.id.desc())).scalars().first()
        assert before + 2 * 86400 <= newest.expired_time <= int(time.time()) + 2 * 86400


def test_create_token_refuses_unknown_user_and_conflicting_options(cli):
    assert cli("create-token", "nobody").exit_code != 0
    cli("create-user", "erin")
    conflicting = cli("create-token", "erin", "--quota", "5", "--unlimited")
    assert conflicting.exit_code != 0
    assert "exclude" in conflicting.output
    assert cli("create-token", "erin", "--expires", "someday").exit_code != 0


def test_create_user_refuses_a_duplicate_name(cli, app):
    cli("create-user", "frank", "--quota", "7")
    result = cli("create-user", "frank", "--quota", "9")
    assert result.exit_code != 0
    assert "already exists" in result.output
    assert _user(app, "frank").quota == 7


def test_top_up_adds_to_a_user_in_quota_units_or_dollars(cli, app, create_user):
    create_user(username="gina", quota=100)
    assert cli("top-up", "gina", "400").exit_code == 0
    result = cli("top-up", "gina", "0.01", "--unit", "USD")
    assert result.exit_code == 0, result.output
    assert "5500" in result.output
    assert _user(app, "gina").quota == 5500


def test_a_numeric_username_wins_over_a_user_id(cli, app, create_user):
    first = create_user(username="first", quota=0)
    create_user(username=str(first), quota=0)  # a user whose name is the other's id
    assert cli("top-up", str(first), "7").exit_code == 0
    assert _user(app, str(first)).quota == 7
    assert _user(app, "first").quota == 0
    other = create_user(username="other")
    assert cli("top-up", str(other), "9").exit_code == 0  # nobody is named so: it is the id
    assert _user(app, "other").quota == 9


@pytest.mark.parametrize("amount", ["0", "-5", "abc", "1.5", "NaN", "1e30", "9223372036854775808"])
def test_top_up_refuses_bad_amounts_and_changes_nothing(cli, app, create_user, amount):
    create_user(username="hank", quota=100)
    assert cli("top-up", "hank", "--", amount).exit_code != 0
    assert _user(app, "hank").quota == 100


def test_top_up_of_an_exhausted_token_re_enables_it(cli, client, app, create_token):
    key = create_token(remain_quota=0, status=TOKEN_EXHAUSTED)
    result = cli("top-up", "--token", key, "500000")
    assert result.exit_code == 0, result.output
    body = client.get("/v1/balance", headers={"Authorization": f"Bearer {key}"}).get_json()
    assert body["balance"] == 1
    with app.app_context():
        token = db.session.execute(db.select(Token).where(Token.key == key[3:])).scalar_one()
        assert token.status == TOKEN_ENABLED


def test_top_up_needs_exactly_one_target(cli):
    assert cli("top-up", "5").exit_code != 0
    assert cli("top-up", "someone", "5", "--token", "sk-abc").exit_code != 0
    assert "no such key" in cli("top-up", "--token", "sk-" + "q" * 48, "5").output


def test_disable_token_makes_the_key_refused(cli, client, create_token):
    key = create_token(remain_quota=5)
    assert cli("disable-token", key).exit_code == 0
    response = client.get("/v1/balance", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 401
    assert response.get_json()["message"] == "Token is disabled"


def test_disable_token_with_unknown_key_fails(cli):
    result = cli("disable-token", "sk-" + "u" * 48)
    assert result.exit_code != 0
    assert "no such key" in result.output


@pytest.fixture
def demo_logs(app):
    """The ``logs`` table ``demo`` makes, dropped after the test: other tests share the database."""
    yield
    with app.app_context():
        logs.drop(db.engine, checkfirst=True)


def test_demo_seeds_an_empty_database_once(cli, client, demo_logs):
    first = cli("demo", "--host", "127.0.0.1:9999")
    assert first.exit_code == 0, first.output
    key = KEY_LINE.findall(first.output)[0]
    assert "The service will be on http://127.0.0.1:9999" in first.output
    assert f'curl -s -H "Authorization: Bearer {key}" http://127.0.0.1:9999/v1/user/balance' in first.output
    assert client.get("/v1/user/balance", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    second = cli("demo")
    assert second.exit_code == 0
    assert not KEY_LINE.findall(second.output)
    assert "already has users" in second.output


def test_demo_prints_the_address_of_the_bind_setting(make_app, demo_logs):
    output = make_app(BIND="127.0.0.1:8765").test_cli_runner().invoke(args=["demo"]).output
    key = KEY_LINE.findall(output)[0]
    assert "The service will be on http://127.0.0.1:8765; try:" in output
    assert "http://127.0.0.1:8765/v1/user/balance" in output and key in output


def test_demo_gives_a_first_run_thirty_days_of_usage_with_a_forecast_and_four_models(app, cli, client, demo_logs):
    output = cli("demo").output
    key = KEY_LINE.findall(output)[0]
    assert re.search(r"Usage history: \d+ requests over the last 30 days in a new logs table", output)
    auth = {"Authorization": f"Bearer {key}"}

    def exact(path: str) -> dict:
        return json.loads(client.get(path, headers=auth).data, parse_float=Decimal)

    usage = exact("/v1/usage")
    assert len(usage["days"]) == 30
    assert sum(1 for day in usage["days"] if day["used"] > 0) >= 28
    assert [m["model"] for m in usage["models"]] == ["gpt-4o", "claude-3-5-sonnet", "gpt-4o-mini", "deepseek-chat"]
    assert usage["forecast"]["days_left"] > 1
    mine = exact("/v1/usage?scope=key")
    assert 0 < mine["total_used"] < usage["total_used"]  # the key's share of the account's spend

    # The account's and the key's used figures are what the logs add up to, as on a gateway.
    user, token = exact("/v1/user/balance"), exact("/v1/balance")
    assert (user["remain_balance"], user["used_balance"]) == (Decimal(10), usage["total_used"])
    assert (token["remain_balance"], token["used_balance"]) == (Decimal(2), mine["total_used"])


def test_the_demo_logs_are_shaped_as_the_gateways_write_them(app, cli, demo_logs):
    cli("demo")
    now = int(time.time())
    with app.app_context():
        rows = db.session.execute(select(logs)).mappings().all()
        tokens = dict(db.session.execute(select(Token.id, Token.name)).all())
    assert {r["type"] for r in rows} == {LOG_CONSUME, LOG_REFUND}
    assert sum(1 for r in rows if r["type"] == LOG_REFUND) == 4
    assert all(tokens[r["token_id"]] == r["token_name"] for r in rows)
    assert {r["token_name"] for r in rows} == {"demo", "demo-batch"}
    assert all(now - 30 * 86400 < r["created_at"] <= now + 60 for r in rows)
    assert all(r["quota"] > 0 for r in rows)


def test_demo_leaves_an_existing_logs_table_alone(app, cli, gateway_tables):
    tables = gateway_tables().create_logs("one-api")
    tables.add([Log(1, int(time.time()), 2, 123, "kept-model", "kept")])
    output = cli("demo").output
    assert "Usage history: logs table kept." in output
    with app.app_context():
        rows = db.session.execute(select(logs.c.model_name, logs.c.quota)).all()
    assert [tuple(r) for r in rows] == [("kept-model", 123)]


def test_in_a_checkout_the_hint_names_the_checkouts_flask(cli, create_user):
    create_user(username="somebody")
    output = cli("demo").output
    assert "create a key with: .venv/bin/flask --app wsgi create-token USER" in output


def test_from_a_wheel_the_hint_names_balance_service(database_url, create_user):
    """``balance-service`` is the console script a wheel installs; its hints must name it, not a checkout's flask."""
    create_user(username="somebody")
    result = CliRunner().invoke(console.main, ["demo"], env={"DATABASE_URL": database_url})
    assert result.exit_code == 0, result.output
    assert "create a key with: balance-service create-token USER" in result.output


def test_balance_service_version_is_the_services_own():
    result = CliRunner().invoke(console.main, ["--version"])
    assert (result.exit_code, result.output) == (0, f"balance-service {__version__}\n")


def test_disable_token_stores_the_status_the_gateway_reads_as_disabled(app, cli, create_token):
    """one-api / new-api treat ``tokens.status = 2`` as disabled: the gateway must refuse the key too."""
    key = create_token(remain_quota=5)
    assert cli("disable-token", key).exit_code == 0
    with app.app_context():
        status = db.session.execute(db.select(Token.status).where(Token.key == key[3:])).scalar_one()
    assert status == 2  # the gateway's number, not the service's constant: they must agree


BIGINT_MAX = 2**63 - 1


def test_a_user_top_up_past_the_bigint_range_is_refused_and_changes_nothing(cli, app, create_user):
    """SQLite used to store the sum as a REAL; PostgreSQL and MariaDB failed with an overflow."""
    create_user(username="ivy", quota=BIGINT_MAX - 10)
    result = cli("top-up", "ivy", "11")
    assert result.exit_code == 1
    assert "top-up refused: the result would be more than 9223372036854775807" in result.output
    assert "database error" not in result.output
    quota = _user(app, "ivy").quota
    assert (type(quota), quota) == (int, BIGINT_MAX - 10)

    assert cli("top-up", "ivy", "10").exit_code == 0
    quota = _user(app, "ivy").quota
    assert (type(quota), quota) == (int, BIGINT_MAX)
    assert cli("top-up", "ivy", "1").exit_code == 1
    assert _user(app, "ivy").quota == BIGINT_MAX


def test_a_key_top_up_past_the_bigint_range_is_refused_and_changes_nothing(cli, app, create_token):
    key = create_token(remain_quota=BIGINT_MAX - 1, status=TOKEN_EXHAUSTED)
    result = cli("top-up", "--token", key, "2")
    assert result.exit_code == 1
    assert "top-up refused" in result.output
    with app.app_context():
        token = db.session.execute(db.select(Token).where(Token.key == key[3:])).scalar_one()
        assert (type(token.remain_quota), token.remain_quota, token.status) == (int, BIGINT_MAX - 1, TOKEN_EXHAUSTED)
    assert cli("top-up", "--token", key, "1").exit_code == 0
    with app.app_context():
        token = db.session.execute(db.select(Token).where(Token.key == key[3:])).scalar_one()
        assert (token.remain_quota, token.status) == (BIGINT_MAX, TOKEN_ENABLED)


def test_a_top_up_of_an_overdrawn_account_is_not_refused(cli, app, create_user):
    create_user(username="jude", quota=-5)
    assert cli("top-up", "jude", str(BIGINT_MAX)).exit_code == 0
    assert _user(app, "jude").quota == BIGINT_MAX - 5
