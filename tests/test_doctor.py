"""``flask doctor``: what the gateway database holds and the index the usage queries want, read-only."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, text

from balance_service.config import normalize_database_url
from tests.gateway_logs import CONSUME, Log

COVERED = "type, quota, model_name"
STATISTICS = [
    "CREATE STATISTICS IF NOT EXISTS logs_usage_day_model (ndistinct) ON (created_at / 86400), model_name FROM logs;",
    "ANALYZE logs;",
]
STATEMENTS = {
    "sqlite": [
        f"CREATE INDEX IF NOT EXISTS idx_logs_user_id_created_at_usage ON logs (user_id, created_at, {COVERED});",
        f"CREATE INDEX IF NOT EXISTS idx_logs_token_id_created_at_usage ON logs (token_id, created_at, {COVERED});",
    ],
    "postgresql": [
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_logs_user_id_created_at_usage ON logs (user_id, created_at) "
        f"INCLUDE ({COVERED});",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_logs_token_id_created_at_usage ON logs (token_id, created_at) "
        f"INCLUDE ({COVERED});",
        *STATISTICS,
    ],
    "mariadb": [
        f"ALTER TABLE logs ADD INDEX idx_logs_user_id_created_at_usage (user_id, created_at, {COVERED}), "
        "ALGORITHM=INPLACE, LOCK=NONE;",
        f"ALTER TABLE logs ADD INDEX idx_logs_token_id_created_at_usage (token_id, created_at, {COVERED}), "
        "ALGORITHM=INPLACE, LOCK=NONE;",
    ],
}
#: one-api: the account's index alone, also holding token_name (its key scope filters on it).
ONE_API = {
    "sqlite": [
        f"CREATE INDEX IF NOT EXISTS idx_logs_user_id_created_at_usage ON logs (user_id, created_at, {COVERED}, "
        "token_name);"
    ],
    "postgresql": [
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_logs_user_id_created_at_usage ON logs (user_id, created_at) "
        f"INCLUDE ({COVERED}, token_name);",
        *STATISTICS,
    ],
    "mariadb": [
        f"ALTER TABLE logs ADD INDEX idx_logs_user_id_created_at_usage (user_id, created_at, {COVERED}, token_name), "
        "ALGORITHM=INPLACE, LOCK=NONE;"
    ],
}


@pytest.fixture
def doctor(app):
    def run(application=None):
        result = (application or app).test_cli_runner().invoke(args=["doctor"])
        assert result.exit_code == 0, result.output
        return result.output

    return run


def tables_of(url):
    engine = create_engine(normalize_database_url(url))
    names = set(inspect(engine).get_table_names())
    engine.dispose()
    return names


def recommended(output: str) -> list[str]:
    return [line.strip() for line in output.split("recommended (", 1)[1].splitlines()[1:] if line.strip()]


def test_a_new_api_database_gets_both_indexes_recommended_for_its_backend(doctor, gateway_tables, backend):
    logs = gateway_tables().create_logs("new-api")
    logs.set_options({"QuotaPerUnit": "500000", "LogConsumeEnabled": "true"})
    output = doctor()
    assert "read-only: nothing is written" in output
    for line in ("  users    present", "  tokens   present", "  options  present", "  QuotaPerUnit = 500000"):
        assert line in output
    assert "  DisplayTokenStatEnabled: not set (default true)" in output
    assert "  consume logging: on" in output
    assert "  logs     present, new-api layout (with token_id)" in output
    assert "    idx_created_at_type (created_at, type)" in output
    assert "    idx_user_id_id (user_id, id)" in output
    assert "only user_id is indexed" in output and "only token_id is indexed" in output
    assert recommended(output) == STATEMENTS[backend]


def test_once_the_indexes_exist_nothing_more_is_recommended(doctor, gateway_tables, backend):
    logs = gateway_tables().create_logs("new-api")
    with logs.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for statement in STATEMENTS[backend]:  # exactly as printed: CONCURRENTLY needs autocommit
            conn.execute(text(statement))
    output = doctor()
    assert "account: user_id = ? AND created_at range -> served by idx_logs_user_id_created_at_usage" in output
    assert "key: token_id = ? AND created_at range -> served by idx_logs_token_id_created_at_usage" in output
    assert recommended(output) == ["nothing: the usage queries have the indexes they need"]
    if backend == "postgresql":
        assert "grouping by day and model: estimated from the extended statistics on them" in output


def test_an_index_on_the_range_alone_is_replaced_by_a_covering_one(doctor, gateway_tables, backend):
    logs = gateway_tables().create_logs("new-api")
    logs.execute("CREATE INDEX idx_logs_user_id_created_at ON logs (user_id, created_at)")
    output = doctor()
    assert (
        "account: user_id = ? AND created_at range -> the range is found with idx_logs_user_id_created_at, "
        "then each row is read from the table" in output
    )
    assert "(idx_logs_user_id_created_at can go once it exists)" in output
    assert recommended(output)[:2] == STATEMENTS[backend][:2]


@pytest.mark.parametrize("backend", ["postgresql"])
def test_the_statistics_make_postgresql_expect_the_real_number_of_day_and_model_groups(
    app, gateway_tables, create_user
):
    logs = gateway_tables().create_logs("new-api")
    owner = create_user()
    start = 1_760_000_000 - 1_760_000_000 % 86400
    logs.add(Log(owner, start + n * 37, CONSUME, 1, f"m{n % 3}", "k", 1) for n in range(3000))  # 2 days × 3 models
    query = (
        "EXPLAIN SELECT created_at / 86400, model_name, count(*) FROM logs "
        f"WHERE user_id = {owner} GROUP BY created_at / 86400, model_name"
    )

    def expected_groups() -> int:
        with logs.engine.connect() as conn:
            plan = conn.execute(text(query)).scalars().first()
        return int(plan.split("rows=")[1].split()[0])

    logs.execute("ANALYZE logs")
    assert expected_groups() > 100  # without them: a guess from the rows, far above the 6 groups
    with logs.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for statement in STATISTICS:
            conn.execute(text(statement))
    assert expected_groups() == 6


def test_a_one_api_database_needs_only_the_account_index(doctor, gateway_tables, backend):
    gateway_tables().create_logs("one-api")
    output = doctor()
    assert "  logs     present, one-api layout (no token_id)" in output
    assert "key scope (one-api): user_id and token_name" in output
    assert recommended(output) == ONE_API[backend]


def test_consume_logging_off_and_whose_figures_billing_reports_are_pointed_out(doctor, gateway_tables):
    logs = gateway_tables().create_logs("new-api")
    logs.set_options({"LogConsumeEnabled": "1", "QuotaPerUnit": "1000000", "DisplayTokenStatEnabled": "false"})
    output = doctor()
    assert "  QuotaPerUnit = 1000000" in output
    assert "  consume logging: OFF" in output  # "1" is not "true": the gateway does not log consumption
    assert "  billing endpoints report: the account" in output


def test_by_default_the_billing_endpoints_report_the_key(doctor):
    assert "  billing endpoints report: the key" in doctor()


def test_a_database_without_gateway_logs_or_options_is_described(doctor, database_url):
    output = doctor()
    assert "  options  MISSING" in output
    assert "  (no options table: the gateway's defaults apply)" in output
    assert "  logs     MISSING" in output
    assert "recommended (" not in output


def test_a_separate_log_database_is_inspected_for_the_logs(log_database_url, make_app, doctor, gateway_tables):
    gateway_tables().create_logs("new-api")  # the main database's empty table, as the gateway leaves it
    gateway_tables(log_database_url).create_logs("one-api")
    output = doctor(make_app(LOG_DATABASE_URL=log_database_url))
    assert "(LOG_DATABASE_URL)" in output
    assert "  logs     present, one-api layout (no token_id)" in output


def test_the_doctor_writes_nothing(doctor, gateway_tables, database_url):
    logs = gateway_tables().create_logs("new-api")
    logs.set_options({"LogConsumeEnabled": "false"})
    tables, rows = tables_of(database_url), logs.dump()
    doctor()
    assert (tables_of(database_url), logs.dump()) == (tables, rows)


def test_an_unreachable_log_database_is_a_one_line_error(make_app):
    dead = make_app(LOG_DATABASE_URL="sqlite:////nonexistent-dir/sub/logs.sqlite3")
    result = dead.test_cli_runner().invoke(args=["doctor"])
    assert result.exit_code == 1
    assert "database error" in result.output and "Traceback" not in result.output
