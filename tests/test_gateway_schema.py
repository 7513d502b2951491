"""A database created by the gateway itself (GORM DDL, extra columns, no foreign key) works as is.

The tables below are what one-api (no soft delete) and new-api (``deleted_at``)
create on SQLite and PostgreSQL. The service must read them correctly and
write nothing to them.
"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from sqlalchemy import create_engine, text

from balance_service import create_app
from balance_service.gateway.tables import TTL, cache
from tests.helpers import recording_receiver, temporary_postgres_database

SQLITE_DDL = """
CREATE TABLE `users` (`id` integer,`username` text UNIQUE,`password` text NOT NULL,`display_name` text,
  `role` integer DEFAULT 1,`status` integer DEFAULT 1,`email` text,`github_id` text,`wechat_id` text,
  `access_token` char(32) UNIQUE,`quota` integer DEFAULT 0,`used_quota` integer DEFAULT 0,
  `request_count` integer DEFAULT 0,`group` varchar(32) DEFAULT 'default',`aff_code` varchar(32) UNIQUE,
  `inviter_id` integer,`setting` text{users_deleted},PRIMARY KEY (`id`));
CREATE TABLE `tokens` (`id` integer,`user_id` integer,`key` char(48),`status` integer DEFAULT 1,`name` text,
  `created_time` integer,`accessed_time` integer,`expired_time` integer DEFAULT -1,`remain_quota` integer DEFAULT 0,
  `unlimited_quota` numeric DEFAULT false,`used_quota` integer DEFAULT 0,`models` text,`subnet` text DEFAULT ''
  {tokens_deleted},PRIMARY KEY (`id`));
CREATE UNIQUE INDEX `idx_tokens_key` ON `tokens`(`key`);
"""

POSTGRES_DDL = """
CREATE TABLE "users" ("id" bigserial,"username" text UNIQUE,"password" text NOT NULL,"display_name" text,
  "role" bigint DEFAULT 1,"status" bigint DEFAULT 1,"email" text,"github_id" text,"wechat_id" text,
  "access_token" char(32) UNIQUE,"quota" bigint DEFAULT 0,"used_quota" bigint DEFAULT 0,
  "request_count" bigint DEFAULT 0,"group" varchar(32) DEFAULT 'default',"aff_code" varchar(32) UNIQUE,
  "inviter_id" bigint,"setting" text{users_deleted},PRIMARY KEY ("id"));
CREATE TABLE "tokens" ("id" bigserial,"user_id" bigint,"key" char(48),"status" bigint DEFAULT 1,"name" text,
  "created_time" bigint,"accessed_time" bigint,"expired_time" bigint DEFAULT -1,"remain_quota" bigint DEFAULT 0,
  "unlimited_quota" boolean DEFAULT false,"used_quota" bigint DEFAULT 0,"models" text,"subnet" text DEFAULT ''
  {tokens_deleted},PRIMARY KEY ("id"));
CREATE UNIQUE INDEX "idx_tokens_key" ON "tokens"("key");
"""

DELETED_COLUMN = {"sqlite": ",`deleted_at` datetime", "postgresql": ',"deleted_at" timestamptz'}
# GORM writes soft-delete times with a zone and nanoseconds; the service must not choke on them.
DELETED_VALUE = {"sqlite": "2026-03-01 10:11:12.123456789+08:00", "postgresql": "2026-03-01 10:11:12+08"}

ALICE, BOB, GONE = "a" * 48, "b" * 48, "g" * 48
DELETED_KEY, ORPHAN = "d" * 48, "o" * 48

# MySQL/MariaDB's GORM layout is exercised in test_gateway_schema_mysql.py.
pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgresql"])


@pytest.fixture(params=["new-api", "one-api"])
def flavour(request):
    return request.param


@pytest.fixture
def gateway_url(backend, flavour, tmp_path):
    """A database with the gateway's own tables and rows, created with raw SQL only."""
    soft = flavour == "new-api"
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'gateway.db'}"
        yield from _populate(url, backend, soft)
    else:
        with temporary_postgres_database() as url:
            yield from _populate(url, backend, soft)


def _populate(url, backend, soft):
    ddl = SQLITE_DDL if backend == "sqlite" else POSTGRES_DDL
    deleted = DELETED_COLUMN[backend] if soft else ""
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1))
    now = int(time.time())
    with engine.begin() as conn:
        for statement in ddl.format(users_deleted=deleted, tokens_deleted=deleted).split(";"):
            if statement.strip():
                conn.execute(text(statement))
        users = [
            (1, "alice", 1234567, 765433, 1),
            (2, "bob", 500000, 0, 1),
            (3, "gone", 999, 0, 1),
        ]
        for uid, name, quota, used, status in users:
            conn.execute(
                text(
                    "INSERT INTO users (id, username, password, display_name, role, status, quota, used_quota, "
                    "request_count, aff_code, access_token, setting) VALUES "
                    "(:id, :name, 'x', :name, 1, :status, :quota, :used, 7, :name, :name, '{}')"
                ),
                {"id": uid, "name": name, "quota": quota, "used": used, "status": status},
            )
        tokens = [
            (1, 1, ALICE, 2500000, 5, False),
            (2, 2, BOB, 0, 0, True),
            (3, 3, GONE, 10, 0, False),
            (4, 1, DELETED_KEY, 10, 0, False),
            (5, 42, ORPHAN, 10, 0, False),
        ]
        for tid, uid, key, remain, used, unlimited in tokens:
            conn.execute(
                text(
                    'INSERT INTO tokens (id, user_id, "key", status, name, created_time, accessed_time, '
                    "expired_time, remain_quota, unlimited_quota, used_quota, models) VALUES "
                    "(:id, :uid, :key, 1, 'k', :now, :now, -1, :remain, :unlimited, :used, '')"
                ),
                {"id": tid, "uid": uid, "key": key, "remain": remain, "unlimited": unlimited, "used": used, "now": now},
            )
        if backend == "postgresql":  # explicit ids above: move the sequences past them, as GORM's inserts would
            for table in ("users", "tokens"):
                conn.execute(
                    text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
                )
        if soft:
            stamp = DELETED_VALUE[backend]
            conn.execute(text("UPDATE users SET deleted_at = :t WHERE id = 3"), {"t": stamp})
            conn.execute(text("UPDATE tokens SET deleted_at = :t WHERE id = 4"), {"t": stamp})
        else:  # one-api deletes rows for real
            conn.execute(text("DELETE FROM users WHERE id = 3"))
            conn.execute(text("DELETE FROM tokens WHERE id = 4"))
    engine.dispose()
    yield url


def _dump(url):
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg2://", 1))
    with engine.connect() as conn:
        rows = {t: conn.execute(text(f"SELECT * FROM {t} ORDER BY id")).all() for t in ("users", "tokens")}
    engine.dispose()
    return rows


@pytest.fixture
def gateway_client(gateway_url):
    app = create_app({"TESTING": True, "DATABASE_URL": gateway_url})
    yield app.test_client()
    with app.app_context():
        from balance_service.extensions import db

        db.engine.dispose()


def get(client, path, key):
    return client.get(path, headers={"Authorization": f"Bearer sk-{key}"})


def test_gateway_tables_give_exact_balances(gateway_client):
    user = get(gateway_client, "/v1/user/balance", ALICE).get_json()
    token = get(gateway_client, "/v1/balance", ALICE).get_json()
    assert (user["balance"], user["used"]) == (Decimal("2.469134"), Decimal("1.530866"))
    assert (token["balance"], token["used"]) == (Decimal("5"), Decimal("0.00001"))


def test_gateway_boolean_unlimited_quota_is_read(gateway_client):
    body = get(gateway_client, "/v1/balance", BOB).get_json()
    assert body["balance"] == -1
    assert body["unlimited_quota"] is True


def test_deleted_rows_are_refused_on_a_gateway_database(gateway_client):
    assert get(gateway_client, "/v1/balance", DELETED_KEY).get_json()["message"] == "Invalid token"
    assert get(gateway_client, "/v1/user/balance", GONE).status_code == 404
    assert get(gateway_client, "/v1/user/balance", ORPHAN).status_code == 404


def test_balance_requests_write_nothing_to_the_gateway_database(gateway_url, gateway_client):
    before = _dump(gateway_url)
    for key in (ALICE, BOB, GONE, DELETED_KEY, ORPHAN, "z" * 48):
        for path in ("/v1/user/balance", "/v1/balance"):
            get(gateway_client, path, key)
    assert _dump(gateway_url) == before


@pytest.fixture
def gateway_app(gateway_url):
    app = create_app({"TESTING": True, "DATABASE_URL": gateway_url})
    yield app
    with app.app_context():
        from balance_service.extensions import db

        db.engine.dispose()


def test_operator_commands_work_on_a_gateway_database(gateway_app):
    """top-up, create-token and disable-token on tables the gateway made (one-api's have no deleted_at)."""
    runner = gateway_app.test_cli_runner()
    client = gateway_app.test_client()
    topped = runner.invoke(args=["top-up", "alice", "500000"])
    assert topped.exit_code == 0, topped.output
    assert get(client, "/v1/user/balance", ALICE).get_json()["balance"] == Decimal("3.469134")
    assert runner.invoke(args=["top-up", "--token", "sk-" + ALICE, "1000000"]).exit_code == 0
    assert get(client, "/v1/balance", ALICE).get_json()["balance"] == Decimal("7")
    created = runner.invoke(args=["create-token", "bob", "--quota", "250000"])
    assert created.exit_code == 0, created.output
    new_key = created.output.strip().splitlines()[-1]
    assert client.get("/v1/balance", headers={"Authorization": f"Bearer {new_key}"}).get_json()["balance"] == 0.5
    assert runner.invoke(args=["disable-token", new_key]).exit_code == 0
    assert client.get("/v1/balance", headers={"Authorization": f"Bearer {new_key}"}).status_code == 401
    # A soft-deleted (new-api) or deleted (one-api) account cannot be topped up.
    assert runner.invoke(args=["top-up", "gone", "5"]).exit_code != 0


@pytest.fixture
def one_api_url(backend, tmp_path):
    """One-api's tables (no deleted_at) and rows."""
    if backend == "sqlite":
        yield from _populate(f"sqlite:///{tmp_path / 'one-api.db'}", backend, soft=False)
    else:
        with temporary_postgres_database() as url:
            yield from _populate(url, backend, soft=False)


def test_soft_delete_added_to_a_live_database_is_seen_after_a_minute(backend, one_api_url, monkeypatch):
    """The one-api → new-api migration adds deleted_at while the service runs; no restart is needed."""
    gateway_url = one_api_url
    now = [1000.0]
    monkeypatch.setattr(cache, "clock", lambda: now[0])
    app = create_app({"TESTING": True, "DATABASE_URL": gateway_url})
    client = app.test_client()
    assert get(client, "/v1/balance", ALICE).status_code == 200

    engine = create_engine(gateway_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    with engine.begin() as conn:
        for table in ("users", "tokens"):
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN deleted_at {DELETED_COLUMN[backend].split()[-1]}"))
        conn.execute(text("UPDATE tokens SET deleted_at = :t WHERE id = 1"), {"t": DELETED_VALUE[backend]})
    engine.dispose()

    now[0] += TTL - 1
    assert get(client, "/v1/balance", ALICE).status_code == 200  # the layout read a moment ago is still trusted
    now[0] += 2
    refused = get(client, "/v1/balance", ALICE)
    assert (refused.status_code, refused.get_json()["message"]) == (401, "Invalid token")
    assert get(client, "/v1/user/balance", BOB).status_code == 200
    with app.app_context():
        from balance_service.extensions import db

        db.engine.dispose()


NULL_KEY = "n" * 48


@pytest.fixture
def app_with_nulls(gateway_url):
    """The gateway tables plus an account and a key whose every numeric column is NULL (real databases have them)."""
    engine = create_engine(gateway_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (id, username, password, display_name, role, status, quota, used_quota, aff_code,"
                " access_token) VALUES (10, 'nully', 'x', 'nully', NULL, NULL, NULL, NULL, 'nully', 'nully')"
            )
        )
        conn.execute(
            text(
                'INSERT INTO tokens (id, user_id, "key", status, name, created_time, accessed_time, expired_time,'
                " remain_quota, unlimited_quota, used_quota) VALUES"
                " (10, 10, :key, NULL, 'k', NULL, NULL, NULL, NULL, NULL, NULL)"
            ),
            {"key": NULL_KEY},
        )
    engine.dispose()
    app = create_app({"TESTING": True, "DATABASE_URL": gateway_url, "ALERT_ALLOW_PRIVATE_TARGETS": True})
    yield app
    with app.app_context():
        from balance_service.extensions import db

        db.engine.dispose()


ZERO = {
    "success": True,
    "remain_balance": 0,
    "used_balance": 0,
    "unlimited_quota": False,
    "unit": "USD",
    "balance": 0,
    "used": 0,
}


def test_null_gateway_columns_read_as_the_gateways_defaults_on_the_balance_endpoints(app_with_nulls):
    client = app_with_nulls.test_client()
    for path in ("/v1/balance", "/v1/user/balance"):
        response = get(client, path, NULL_KEY)
        assert response.status_code == 200, response.get_json()
        assert response.get_json() == ZERO


@pytest.mark.parametrize("token_stat", ["true", "false"])
def test_null_gateway_columns_read_as_the_gateways_defaults_on_the_billing_endpoints(
    app_with_nulls, gateway_url, token_stat
):
    engine = create_engine(gateway_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    with engine.begin() as conn:
        conn.execute(text('CREATE TABLE options ("key" varchar(191) PRIMARY KEY, value text)'))
        conn.execute(text("INSERT INTO options VALUES ('DisplayTokenStatEnabled', :v)"), {"v": token_stat})
    engine.dispose()
    client = app_with_nulls.test_client()
    subscription = get(client, "/v1/dashboard/billing/subscription", NULL_KEY)
    assert subscription.status_code == 200, subscription.get_json()
    assert (subscription.get_json()["hard_limit_usd"], subscription.get_json()["access_until"]) == (0, 0)
    usage = get(client, "/v1/dashboard/billing/usage", NULL_KEY)
    assert (usage.status_code, usage.get_json()["total_usage"]) == (200, 0)


def test_null_gateway_columns_read_as_the_gateways_defaults_in_the_alert_checker(app_with_nulls):
    """Both alerts watch a zero balance (NULL quota), an enabled owner and key that never expires: both fire."""
    with recording_receiver() as (hook, received):
        runner = app_with_nulls.test_cli_runner()
        assert runner.invoke(args=["init-db"]).exit_code == 0
        client = app_with_nulls.test_client()
        for scope in ("account", "token"):
            created = client.post(
                "/v1/user/balance/alerts",
                json={"threshold": 1, "webhook_url": hook, "scope": scope},
                headers={"Authorization": f"Bearer sk-{NULL_KEY}"},
            )
            assert created.status_code == 201, created.get_json()
        with app_with_nulls.app_context():  # as `flask check-alerts` runs it
            result = runner.invoke(args=["check-alerts"])
        assert result.exit_code == 0, result.output
        assert "2 notified" in result.output
    assert sorted((body["scope"], body["balance"]) for body in received) == [("account", 0), ("token", 0)]


def test_alerts_of_a_key_the_gateway_deleted_stop_and_pass_to_the_accounts_other_keys(backend, flavour, gateway_url):
    """one-api removes the key's row, new-api sets deleted_at (with a zone, as GORM writes it)."""
    engine = create_engine(gateway_url.replace("postgresql://", "postgresql+psycopg2://", 1))
    other = "e" * 48
    with engine.begin() as conn:  # a second key of alice's, as the gateway would add it
        conn.execute(
            text(
                'INSERT INTO tokens (id, user_id, "key", status, name, created_time, accessed_time, expired_time,'
                " remain_quota, unlimited_quota, used_quota) VALUES (6, 1, :key, 1, 'k2', 0, 0, -1, 0, false, 0)"
            ),
            {"key": other},
        )
    app = create_app({"TESTING": True, "DATABASE_URL": gateway_url, "ALERT_ALLOW_PRIVATE_TARGETS": True})
    runner, client = app.test_cli_runner(), app.test_client()
    assert runner.invoke(args=["init-db"]).exit_code == 0
    try:
        with recording_receiver() as (hook, received):
            created = client.post(
                "/v1/user/balance/alerts",
                json={"threshold": 5, "webhook_url": hook},  # alice has 2.469134 USD left
                headers={"Authorization": f"Bearer sk-{ALICE}"},
            )
            assert created.status_code == 201, created.get_json()
            alert_id = created.get_json()["alert"]["id"]
            with engine.begin() as conn:
                if flavour == "new-api":
                    conn.execute(text("UPDATE tokens SET deleted_at = :t WHERE id = 1"), {"t": DELETED_VALUE[backend]})
                else:
                    conn.execute(text("DELETE FROM tokens WHERE id = 1"))
            with app.app_context():  # as `flask check-alerts` runs it
                result = runner.invoke(args=["check-alerts"])
        assert result.exit_code == 0, result.output
        assert "1 created by a key since deleted" in result.output, result.output
        assert received == []
        listed = get(client, "/v1/user/balance/alerts", other).get_json()["alerts"]
        assert [(a["id"], a["webhook_url"]) for a in listed] == [(alert_id, None)]
        deleted = client.delete(f"/v1/user/balance/alerts/{alert_id}", headers={"Authorization": f"Bearer sk-{other}"})
        assert deleted.status_code == 200
    finally:
        engine.dispose()
        with app.app_context():
            from balance_service.extensions import db

            db.engine.dispose()
