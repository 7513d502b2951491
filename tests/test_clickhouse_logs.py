"""The gateway's logs in ClickHouse (``LOG_DATABASE_URL=clickhouse://…``): what only ClickHouse needs checking.

The figures themselves are checked by the usage test modules, which also run against ClickHouse
(``log_stores``); here: one aggregate query per figure, values bound rather than spliced in, the
outage answers, and ``flask doctor``. The main database is SQLite: none of this depends on it.
"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from balance_service.usage.clickhouse import LogStoreError
from balance_service.usage.source import log_source
from tests.clickhouse import ClickHouseTables, free_port, reader_url, running_clickhouse
from tests.gateway_logs import CONSUME, GatewayTables, Log, at, seed_november

pytestmark = [pytest.mark.clickhouse, pytest.mark.backend_independent]

AROUND_NOVEMBER = "?start_date=2025-10-31&end_date=2025-12-02"
NOVEMBER = "?start_date=2025-11-01&end_date=2025-12-01"


@pytest.fixture
def log_store():
    return "clickhouse"


@pytest.fixture
def queries(app, monkeypatch):
    """Every statement the app sends to ClickHouse, with the number of rows that came back."""
    seen: list[tuple[str, int]] = []
    with app.app_context():
        pool = log_source().pool
    real = pool.query

    def spy(statement, params, timeout_ms=None):
        rows = real(statement, params, timeout_ms)
        seen.append((statement, len(rows)))
        return rows

    monkeypatch.setattr(pool, "query", spy)
    return seen


def test_each_figure_is_one_aggregate_query_computed_in_clickhouse(
    app, client, auth, create_user, create_token, gateway_tables, queries
):
    logs = gateway_tables().create_logs("new-api")
    november = seed_november(app, create_user, create_token, logs)
    assert client.get("/v1/usage" + AROUND_NOVEMBER, headers=auth(november.home)).status_code == 200
    queries.clear()  # the table layout is now known (re-read once a minute)

    billing = client.get("/v1/dashboard/billing/usage" + NOVEMBER, headers=auth(november.work)).get_json()
    assert billing["total_usage"] == Decimal("116.2468")
    assert len(queries) == 1 and "sumIf(quota" in queries[0][0] and queries[0][1] == 1

    queries.clear()
    body = client.get("/v1/usage", headers=auth(november.home)).get_json()  # the last 30 days hold the forecast
    assert body["success"] is True
    assert len(queries) == 1 and "GROUP BY day, model_name" in queries[0][0]

    queries.clear()
    body = client.get("/v1/usage" + AROUND_NOVEMBER, headers=auth(november.home)).get_json()
    assert body["total_used"] == Decimal("2.372468")
    # 11 of Alice's rows in range (consume, refund, top-up, manage, error) come back as 7 (day, model) sums;
    # the second query is the forecast's last 7 days, outside this range.
    assert [rows for _, rows in queries] == [7, 1]


def test_a_key_name_with_quotes_is_a_value_not_sql(app, client, auth, create_user, create_token, gateway_tables):
    """On a table without token_id the key's name goes into the query: bound by the driver, never spliced in."""
    logs = gateway_tables().create_logs("one-api")
    owner = create_user()
    tricky = create_token(user_id=owner, name="x' OR '1'='1")
    plain = create_token(user_id=owner, name="work")
    logs.add(
        [
            Log(owner, at("2025-11-03 10:00:00"), CONSUME, 5000, "gpt-4o", "x' OR '1'='1"),
            Log(owner, at("2025-11-03 11:00:00"), CONSUME, 15000, "gpt-4o", "work"),
            Log(owner, at("2025-11-03 12:00:00"), CONSUME, 25000, "gpt-4o", "x\\' OR 1=1 --"),
        ]
    )
    for key, cents in ((tricky, 1), (plain, 3)):
        body = client.get("/v1/dashboard/billing/usage" + NOVEMBER, headers=auth(key)).get_json()
        assert body["total_usage"] == cents


def test_an_unreachable_clickhouse_is_a_json_503_and_balances_still_answer(make_app, auth, create_token):
    closed = f"clickhouse://default@127.0.0.1:{free_port()}/default"
    client = make_app(LOG_DATABASE_URL=closed).test_client()
    key = create_token(remain_quota=500000)
    started = time.monotonic()
    for path in ("/v1/usage", "/v1/dashboard/billing/usage" + NOVEMBER):
        response = client.get(path, headers=auth(key))
        body = response.get_json()
        assert response.status_code == 503, body
        assert body["success"] is False and body["message"].startswith("Failed to get used quota")
    assert time.monotonic() - started < 10
    assert client.get("/v1/balance", headers=auth(key)).get_json()["balance"] == 1
    assert client.get("/v1/user/balance", headers=auth(key)).status_code == 200
    assert client.get("/v1/dashboard/billing/usage", headers=auth(key)).status_code == 200  # lifetime: no logs read


def test_a_clickhouse_server_that_stops_turns_usage_into_503_while_balances_answer(
    make_app, auth, create_user, create_token, database_url, tmp_path
):
    with running_clickhouse(tmp_path / "clickhouse") as url:
        app = make_app(LOG_DATABASE_URL=reader_url(url), DB_STATEMENT_TIMEOUT_MS=2000)
        logs = ClickHouseTables(url, GatewayTables(database_url)).create_logs("new-api")
        november = seed_november(app, create_user, create_token, logs)
        client = app.test_client()
        before = client.get("/v1/dashboard/billing/usage" + NOVEMBER, headers=auth(november.work))
        assert before.get_json()["total_usage"] == Decimal("116.2468")  # a pooled connection is now open
        logs.client.disconnect()
        logs.main.drop()
    response = client.get("/v1/dashboard/billing/usage" + NOVEMBER, headers=auth(november.work))
    assert response.status_code == 503
    assert response.get_json()["message"].startswith("Failed to get used quota")
    assert client.get("/v1/usage", headers=auth(november.work)).status_code == 503
    assert client.get("/v1/balance", headers=auth(november.work)).get_json()["balance"] == Decimal("0.8")


def test_doctor_describes_the_clickhouse_logs_table(make_app, gateway_tables):
    output = make_app().test_cli_runner().invoke(args=["doctor"]).output
    assert "(LOG_DATABASE_URL) (ClickHouse)" in output
    assert "  logs     MISSING" in output
    gateway_tables().create_logs("new-api")
    output = make_app().test_cli_runner().invoke(args=["doctor"]).output
    assert "  logs     present, new-api layout (with token_id)" in output
    assert "nothing: the table's sort key serves the usage queries" in output


def test_the_service_reads_as_a_read_only_user(app):
    """The apps in these tests connect as a readonly = 2 user: the service's queries need nothing more."""
    with app.app_context():
        source = log_source()
        assert source.pool.options["user"] == "reader"
        with pytest.raises(LogStoreError, match="readonly"):
            source.pool.query("CREATE TABLE written (a Int8) ENGINE = Memory", {})
        assert source.has_logs() is False
