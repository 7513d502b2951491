"""The usage roll-up (``flask rollup-usage``): the figures stay those of the raw logs, to the cent, at any moment.

Each test compares what a client sees (``/v1/usage`` bodies and the dated
billing usage, for every key, both scopes and several ranges around the
November fixtures) with the roll-up in every state: never run, partly run,
run, interrupted, run twice at once, with late rows and refunds of closed days
added after it. "Raw" is the same app with the roll-up emptied
(``rebuild``), which reads the logs alone as before the roll-up existed.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import delete, func, select, text, update

from balance_service.extensions import db as _db
from balance_service.migrations import HEAD
from balance_service.usage import rollup
from balance_service.usage.report import scope_forecast
from balance_service.usage.rollup import RollupState, UsageRollup, rebuild, roll_up
from balance_service.usage.source import Scope, sql_log_source
from tests.gateway_logs import CONSUME, REFUND, Log, at, token_id

RANGES = (
    "?start_date=2025-10-31&end_date=2025-12-02",
    "?start_date=2025-11-01&end_date=2025-11-02",
    "?start_date=2025-11-15&end_date=2025-12-01",
    "?start_date=2025-01-01&end_date=2026-01-01",
)
BILLING = ("?start_date=2025-11-01&end_date=2025-12-01", "?start_date=2025-11-01&end_date=2025-11-02")


@pytest.fixture
def rolled(app):
    """Run the roll-up in the app (``settle`` 0 unless given: every id is taken at once); emptied after the test."""

    def run(**options):
        options.setdefault("settle", 0)
        with app.app_context():
            return roll_up(_db.engine, sql_log_source(), **options)

    yield run
    with app.app_context():
        _db.session.execute(delete(UsageRollup))
        _db.session.execute(update(RollupState).values(watermark=0, source="", seen_id=None, seen_at=None))
        _db.session.commit()


def figures(client, auth, keys) -> dict:
    """Everything a client can read of the keys' usage: the bodies of /v1/usage and the billing cents."""
    seen = {}
    for key in keys:
        for scope in ("account", "key"):
            for query in RANGES:
                response = client.get(f"/v1/usage{query}&scope={scope}", headers=auth(key))
                assert response.status_code == 200, response.get_json()
                body = response.get_json()
                body.pop("forecast")  # today's window: empty in November's fixtures; see the forecast test
                seen[key, scope, query] = body
        for query in BILLING:
            response = client.get(f"/v1/dashboard/billing/usage{query}", headers=auth(key))
            seen[key, "billing", query] = response.get_json()["total_usage"]
    return seen


def raw_figures(app, client, auth, keys) -> dict:
    """The figures read from the logs alone (the roll-up emptied, as if it never ran)."""
    with app.app_context():
        rebuild(_db.engine, sql_log_source())
    return figures(client, auth, keys)


def state(app) -> tuple[int, int]:
    """The watermark and the number of buckets."""
    with app.app_context():
        watermark = _db.session.execute(select(RollupState.watermark)).scalar_one()
        return watermark, _db.session.execute(select(func.count()).select_from(UsageRollup)).scalar_one()


def last_log_id(app) -> int:
    with app.app_context():
        return sql_log_source().last_id()


def keys_of(november) -> tuple[str, ...]:
    return (november.work, november.home, november.work2, november.bob_work)


def test_the_rolled_up_figures_are_the_raw_ones_for_every_key_scope_and_range(
    app, client, auth, november, rolled, logs
):
    keys = keys_of(november)
    before = figures(client, auth, keys)
    gateway = logs.dump()
    run = rolled()
    assert (run.before, run.after) == (0, last_log_id(app))
    assert state(app)[1] > 0
    assert figures(client, auth, keys) == before
    assert logs.dump() == gateway  # the gateway's tables are only read


def test_rolled_up_days_are_not_read_from_the_logs_again(app, client, auth, november, rolled, logs):
    """A request adds only the rows after the watermark: rows the gateway deletes later stay counted."""
    keys = keys_of(november)
    before = figures(client, auth, keys)
    rolled()
    logs.execute("DELETE FROM logs")
    assert figures(client, auth, keys) == before


def test_late_rows_and_refunds_of_closed_days_count_before_and_after_the_next_run(
    app, client, auth, november, rolled, logs, flavour
):
    keys = keys_of(november)
    rolled()
    untouched = figures(client, auth, keys)
    work, home = november.ids["work"], november.ids["home"]
    late = [
        Log(november.alice, at("2025-11-15 18:00:00"), CONSUME, 7777, "gpt-4o-mini", "work", work),  # a late write
        Log(november.alice, at("2025-11-01 23:00:00"), CONSUME, 3333, "claude-3", "home", home),
        Log(november.alice, at("2025-12-01 00:00:01"), CONSUME, 1111, "o1", "work", work),  # a new model
    ]
    if flavour == "new-api":  # refunds of closed days' requests
        late += [
            Log(november.alice, at("2025-11-30 23:59:59"), REFUND, 250000, "gpt-4o", "work", work),
            Log(november.alice, at("2025-11-01 12:00:00"), REFUND, 50000, "claude-3", "home", home),
        ]
    logs.add(late)
    between = figures(client, auth, keys)  # the late rows come from the logs, the rest from the roll-up
    assert between != untouched
    run = rolled()
    assert run.after == last_log_id(app) and run.batches == 1
    after = figures(client, auth, keys)  # everything from the roll-up
    assert between == after == raw_figures(app, client, auth, keys)


def test_an_interrupted_run_loses_nothing_and_the_next_one_goes_on(app, client, auth, november, rolled, monkeypatch):
    keys = keys_of(november)
    raw = figures(client, auth, keys)
    first = rolled(batch_ids=3, max_batches=1)  # a run cut short by its bound
    assert first.after == 3
    assert figures(client, auth, keys) == raw
    calls = []
    upsert = rollup._upsert

    def upsert_then_die(connection, rows):
        upsert(connection, rows)
        calls.append(len(rows))
        raise KeyboardInterrupt  # killed mid-batch: the batch's transaction is rolled back

    monkeypatch.setattr(rollup, "_upsert", upsert_then_die)
    with pytest.raises(KeyboardInterrupt):
        rolled(batch_ids=3)
    assert calls and state(app)[0] == 3
    assert figures(client, auth, keys) == raw
    monkeypatch.setattr(rollup, "_upsert", upsert)
    assert rolled(batch_ids=3).after == last_log_id(app)
    assert rolled().batches == 0  # run again: nothing is added twice
    assert figures(client, auth, keys) == raw


def test_a_switch_of_log_database_before_any_roll_up_forgets_how_far_the_other_went(
    app, client, auth, november, rolled
):
    """Noted on another log database (its ids far higher) and never rolled up: those ids say nothing of these."""
    keys = keys_of(november)
    before = figures(client, auth, keys)
    with app.app_context():
        _db.session.execute(update(RollupState).values(watermark=0, source="another", seen_id=5_000_000, seen_at=0))
        _db.session.commit()
    run = rolled()
    assert run.after == last_log_id(app)
    assert figures(client, auth, keys) == before


def test_two_runs_at_once_take_turns_and_sum_each_row_once(app, make_app, client, auth, november, rolled):
    keys = keys_of(november)
    raw = figures(client, auth, keys)
    apps = [app, make_app()]
    both_ready = threading.Barrier(2)
    results: list = [None, None]

    def run(i):
        with apps[i].app_context():
            both_ready.wait(timeout=10)
            results[i] = roll_up(_db.engine, sql_log_source(), batch_ids=2, settle=0)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(results), results
    assert sum(r.batches for r in results) == -(-last_log_id(app) // 2)  # each id range once, by one of them
    assert figures(client, auth, keys) == raw


def test_ids_are_rolled_up_only_once_they_have_settled(app, client, auth, november, rolled, logs):
    """An id is taken only once ``settle`` seconds have passed since it was seen: a gateway insert with a smaller
    id that has not committed yet cannot be skipped."""
    keys = keys_of(november)
    clock = [1_000_000.0]
    seen = last_log_id(app)
    first = rolled(settle=60, clock=lambda: clock[0])
    assert (first.after, first.seen_id) == (0, seen)
    assert "follow once settled (in 60 s)" in str(first)
    logs.add([Log(november.alice, at("2025-11-20 00:00:00"), CONSUME, 10, "gpt-4o", "work", november.ids["work"])])
    clock[0] += 59
    assert rolled(settle=60, clock=lambda: clock[0]).after == 0
    clock[0] += 1
    second = rolled(settle=60, clock=lambda: clock[0])
    assert (second.after, second.seen_id) == (seen, seen + 1)  # the row added meanwhile waits for its turn
    assert figures(client, auth, keys) == raw_figures(app, client, auth, keys)


def test_one_api_keys_and_models_of_names_differing_in_case_or_spaces_keep_their_own_figures(
    app, client, auth, create_user, create_token, gateway_tables, rolled
):
    logs = gateway_tables().create_logs("one-api")
    owner = create_user()
    lower = create_token(user_id=owner, name="work")
    upper = create_token(user_id=owner, name="Work")
    spaced = create_token(user_id=owner, name="work ")
    logs.add(
        [
            Log(owner, at("2025-11-02 10:00:00"), CONSUME, 1000, "gpt-4o", "work"),
            Log(owner, at("2025-11-02 11:00:00"), CONSUME, 20000, "gpt-4o", "Work"),
            Log(owner, at("2025-11-02 12:00:00"), CONSUME, 300000, "gpt-4o", "work "),
            Log(owner, at("2025-11-02 13:00:00"), CONSUME, 4000000, "GPT-4o", "work "),
        ]
    )
    keys = (lower, upper, spaced)
    raw = figures(client, auth, keys)
    rolled()
    assert figures(client, auth, keys) == raw
    assert [raw[key, "billing", BILLING[0]] for key in keys] == [Decimal("0.2"), Decimal("4"), Decimal("860")]
    # Models are told apart byte for byte too, MySQL's collations notwithstanding.
    assert raw[lower, "account", RANGES[0]]["models"] == [
        {"model": "GPT-4o", "used": Decimal("8"), "requests": 1},
        {"model": "gpt-4o", "used": Decimal("0.642"), "requests": 3},
    ]


def test_the_forecast_is_the_same_from_the_roll_up(app, client, auth, create_user, create_token, logs, rolled):
    today = datetime.now(UTC).date()
    midnight = int(datetime(today.year, today.month, today.day, tzinfo=UTC).timestamp())
    owner = create_user(quota=700000)
    key = create_token(user_id=owner, name="k", remain_quota=1400000)
    spent = token_id(app, key)
    refund = REFUND if logs.flavour == "new-api" else CONSUME
    logs.add(
        [
            Log(owner, midnight - 7 * 86400, CONSUME, 300000, "m", "k", spent),
            Log(owner, midnight - 1, CONSUME, 100000, "m", "k", spent),
            Log(owner, midnight, CONSUME, 999999, "m", "k", spent),  # today, rolled up with the rest
        ]
    )

    def forecasts():
        with app.app_context():
            account = scope_forecast(Scope(user_id=owner), 700000, False, today)
            own = scope_forecast(Scope(user_id=owner, token_id=spent, token_name="k"), 1400000, False, today)
        bodies = [client.get(f"/v1/usage?scope={s}", headers=auth(key)).get_json() for s in ("account", "key")]
        return account, own, [b["forecast"] for b in bodies], [b["days"] for b in bodies]

    raw = forecasts()
    rolled()
    logs.add([Log(owner, midnight - 3 * 86400, refund, 50000, "m", "k", spent)])  # a late refund in the window
    between = forecasts()
    assert between != raw
    rolled()
    assert forecasts() == between
    assert between[0].days_left == Decimal("14.0" if logs.flavour == "new-api" else "10.8")


def test_logs_in_a_database_of_their_own_are_rolled_up_into_the_main_one(
    log_database_url, make_app, create_user, create_token, gateway_tables, auth
):
    logs = gateway_tables(log_database_url).create_logs("new-api")
    app = make_app(LOG_DATABASE_URL=log_database_url)
    client = app.test_client()
    owner = create_user()
    key = create_token(user_id=owner, name="k")
    logs.add([Log(owner, at(f"2025-11-0{n} 10:00:00"), CONSUME, 1000 * n, "m", "k", 1) for n in range(1, 8)])
    raw = figures(client, auth, (key,))
    try:
        with app.app_context():
            run = roll_up(_db.engine, sql_log_source(), settle=0)
            assert run.after == 7
        assert figures(client, auth, (key,)) == raw
        with logs.engine.connect() as connection:  # nothing of the service's in the gateway's log database
            assert "usage_rollup" not in connection.dialect.get_table_names(connection)
    finally:
        with app.app_context():
            _db.session.execute(delete(UsageRollup))
            _db.session.execute(update(RollupState).values(watermark=0, source="", seen_id=None, seen_at=None))
            _db.session.commit()


# --- the command ---------------------------------------------------------------------------------------------------


def test_the_command_rolls_up_then_finds_nothing_new(app, november, rolled):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["rollup-usage", "--settle", "0", "--batch-size", "5"])
    assert result.exit_code == 0, result.output
    last = last_log_id(app)
    assert f"rolled up log ids 1-{last} in {-(-last // 5)} batch(es)" in result.output
    again = runner.invoke(args=["rollup-usage", "--settle", "0"])
    assert f"nothing new to roll up (at log id {last})" in again.output
    assert state(app)[0] == last


def test_the_command_refuses_logs_whose_ids_went_back_until_rebuilt(app, november, rolled, logs):
    rolled()
    logs.execute("DELETE FROM logs WHERE id > 3")
    runner = app.test_cli_runner()
    refused = runner.invoke(args=["rollup-usage", "--settle", "0"])
    assert refused.exit_code == 1
    assert "below the roll-up's" in refused.output and "--rebuild" in refused.output
    rebuilt = runner.invoke(args=["rollup-usage", "--settle", "0", "--rebuild"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert state(app)[0] == 3


def test_the_command_asks_for_init_db_on_a_database_not_migrated(app, november):
    with app.app_context():
        _db.session.execute(text("UPDATE balance_service_alembic_version SET version_num = '0001'"))
        _db.session.commit()
    try:
        result = app.test_cli_runner().invoke(args=["rollup-usage", "--settle", "0"])
        assert result.exit_code == 1
        assert "flask --app wsgi init-db" in result.output
    finally:
        with app.app_context():
            _db.session.execute(text("UPDATE balance_service_alembic_version SET version_num = :v"), {"v": HEAD})
            _db.session.commit()


@pytest.mark.parametrize(("backend", "log_store"), [("sqlite", "clickhouse")])
def test_logs_in_clickhouse_are_not_rolled_up(app, client, auth, november):
    result = app.test_cli_runner().invoke(args=["rollup-usage"])
    assert result.exit_code == 0
    assert "the logs are in ClickHouse" in result.output
    assert state(app) == (0, 0)


def test_doctor_tells_how_far_the_roll_up_has_got(app, november, rolled, logs):
    def doctor() -> str:
        result = app.test_cli_runner().invoke(args=["doctor"])
        assert result.exit_code == 0, result.output
        return result.output

    last = last_log_id(app)
    assert f"never run: each usage request sums its range from the logs ({last} log ids)" in doctor()
    rolled()
    logs.add([Log(november.alice, at("2025-11-20 00:00:00"), CONSUME, 10, "gpt-4o", "work", november.ids["work"])])
    assert f"at log id {last} of {last + 1}: requests read 1 log ids from the logs" in doctor()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])  # their gateways' name columns are unbounded text
def test_names_longer_than_mysqls_columns_are_rolled_up_whole(
    app, client, auth, create_user, create_token, logs, rolled
):
    owner = create_user()
    key = create_token(user_id=owner, name="k")
    model = "provider/" + "m" * 300
    logs.add([Log(owner, at("2025-11-03 10:00:00"), CONSUME, 5000, model, "k", token_id(app, key))])
    raw = figures(client, auth, (key,))
    rolled()
    assert figures(client, auth, (key,)) == raw
    assert [m["model"] for m in raw[key, "key", RANGES[0]]["models"]] == [model]
