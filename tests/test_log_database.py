"""``LOG_DATABASE_URL``: the gateway's request logs in a database of their own (its ``LOG_SQL_DSN``).

The main database then still has an empty ``logs`` table, as the gateway leaves it; the usage
figures must come from the log database, the options (``LogConsumeEnabled``) from the main one.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from balance_service import create_app
from balance_service.config import ConfigError, Settings, flask_config, normalize_database_url
from balance_service.extensions import db
from balance_service.usage.clickhouse import client_options
from tests.gateway_logs import seed_november

NOVEMBER = "?start_date=2025-11-01&end_date=2025-12-01"
UNAVAILABLE = {"success": False, "message": "Failed to get used quota"}
DEAD = {
    "sqlite": "sqlite:////nonexistent-dir/sub/logs.sqlite3",
    "postgresql": "postgresql://postgres@127.0.0.1:1/logs",
    "mariadb": "mysql://root@127.0.0.1:1/logs",
}


@pytest.fixture
def split(log_database_url, make_app, create_user, create_token, gateway_tables):
    """An app whose logs live in another database; the main database's ``logs`` is empty."""
    gateway_tables().create_logs("new-api")
    logs = gateway_tables(log_database_url).create_logs("new-api")
    app = make_app(LOG_DATABASE_URL=log_database_url)
    november = seed_november(app, create_user, create_token, logs)
    return app.test_client(), november, logs


def test_usage_is_read_from_the_log_database(split, auth):
    client, november, _ = split
    body = client.get("/v1/usage?start_date=2025-10-31&end_date=2025-12-02", headers=auth(november.home)).get_json()
    assert body["total_used"] == Decimal("2.372468")
    billing = client.get("/v1/dashboard/billing/usage" + NOVEMBER, headers=auth(november.work)).get_json()
    assert billing["total_usage"] == Decimal("116.2468")


def test_consume_logging_is_read_from_the_main_database(split, auth, gateway_tables):
    client, november, _ = split
    gateway_tables().set_options({"LogConsumeEnabled": "false"})
    assert client.get("/v1/usage", headers=auth(november.work)).status_code == 409
    billing = client.get("/v1/dashboard/billing/usage" + NOVEMBER, headers=auth(november.work)).get_json()
    assert billing["total_usage"] == Decimal("1777.7776")  # lifetime


def test_a_log_database_without_logs_is_not_replaced_by_the_main_one(
    log_database_url, make_app, auth, create_user, create_token, gateway_tables
):
    main_logs = gateway_tables().create_logs("new-api")
    app = make_app(LOG_DATABASE_URL=log_database_url)
    november = seed_november(app, create_user, create_token, main_logs)
    client = app.test_client()
    assert client.get("/v1/usage", headers=auth(november.work)).status_code == 409
    billing = client.get("/v1/dashboard/billing/usage" + NOVEMBER, headers=auth(november.work)).get_json()
    assert billing["total_usage"] == Decimal("1777.7776")


def test_an_unreachable_log_database_is_a_json_503_and_balances_still_answer(make_app, auth, create_token, backend):
    client = make_app(LOG_DATABASE_URL=DEAD[backend]).test_client()
    key = create_token(remain_quota=500000)
    for path in ("/v1/usage", "/v1/dashboard/billing/usage" + NOVEMBER):
        response = client.get(path, headers=auth(key))
        assert (response.status_code, response.get_json()) == (503, UNAVAILABLE)
    assert client.get("/v1/balance", headers=auth(key)).get_json()["balance"] == 1
    assert client.get("/v1/dashboard/billing/usage", headers=auth(key)).status_code == 200  # lifetime: no logs needed


def test_the_service_creates_no_gateway_table_in_either_database(make_app, log_database_url, database_url):
    app = make_app(LOG_DATABASE_URL=log_database_url)
    result = app.test_cli_runner().invoke(args=["init-db"])
    assert result.exit_code == 0, result.output
    for url in (database_url, log_database_url):
        engine = create_engine(normalize_database_url(url))
        tables = set(inspect(engine).get_table_names())
        engine.dispose()
        assert not tables & {"logs", "options"}, (url, tables)
    with app.app_context():
        assert db.engines["logs"].url.database == make_url(log_database_url).database != db.engine.url.database


def test_log_database_url_is_read_from_the_environment_and_normalized(monkeypatch, tmp_path):
    monkeypatch.setenv("LOG_DATABASE_URL", "postgres://gateway:secret@127.0.0.1:5432/logs")
    config = flask_config(Settings.from_env(), str(tmp_path))
    bind = config["SQLALCHEMY_BINDS"]["logs"]
    assert bind["url"] == "postgresql+psycopg2://gateway:secret@127.0.0.1:5432/logs"
    assert "statement_timeout" in bind["connect_args"]["options"]  # the main database's pool and timeout settings
    monkeypatch.setenv("LOG_DATABASE_URL", "mysql://gateway@127.0.0.1/logs")
    bind = flask_config(Settings.from_env(), str(tmp_path))["SQLALCHEMY_BINDS"]["logs"]
    assert bind["url"].startswith("mysql+pymysql://")


def test_without_log_database_url_the_logs_are_read_on_the_main_pool(monkeypatch, tmp_path):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/main.db")
    app = create_app({"TESTING": True})
    assert "logs" not in app.config.get("SQLALCHEMY_BINDS", {})
    with app.app_context():
        from balance_service.usage.source import log_engine

        assert log_engine() is db.engine


def test_a_clickhouse_url_makes_no_sql_bind_and_keeps_the_url(monkeypatch, tmp_path):
    monkeypatch.setenv("LOG_DATABASE_URL", " clickhouse://reader:secret@127.0.0.1:9000/gateway ")
    settings = Settings.from_env()
    assert "logs" not in (flask_config(settings, str(tmp_path)).get("SQLALCHEMY_BINDS") or {})
    assert settings.log_database_url == "clickhouse://reader:secret@127.0.0.1:9000/gateway"


@pytest.mark.parametrize(
    "url",
    [
        "clickhouse:///gateway",
        "clickhouse://reader@127.0.0.1:nine/gateway",
        "tcp://127.0.0.1:9000?database=gateway&username=reader",  # new-api's forms: not the native URL
        "http://reader:secret@127.0.0.1:8123/gateway",
    ],
)
def test_a_clickhouse_url_without_a_usable_host_is_refused_at_start(monkeypatch, tmp_path, url):
    monkeypatch.setenv("LOG_DATABASE_URL", url)
    with pytest.raises(ConfigError, match="LOG_DATABASE_URL"):
        Settings.from_env()


def test_clickhouse_timeouts_follow_the_database_settings():
    host, options = client_options("clickhouse://reader:secret@10.0.0.5:9440/gateway", 2, 4500)
    assert (host, options["port"], options["database"], options["user"]) == ("10.0.0.5", 9440, "gateway", "reader")
    assert (options["connect_timeout"], options["send_receive_timeout"]) == (2, 5.0)  # the statement timeout + 0.5 s
    assert options["settings"]["max_execution_time"] == 5  # the server gives up first, in whole seconds
    _, options = client_options("clickhouse://h/db?connect_timeout=7", 2, 0)  # the URL wins; 0 = no limit
    assert options["connect_timeout"] == 7 and "settings" not in options
