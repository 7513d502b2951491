"""The service pointed at a MySQL/MariaDB database laid out by the gateway itself.

The tables below are created with the DDL GORM's MySQL driver emits for
one-api's and new-api's ``User`` and ``Token`` models: Go ``int`` → ``bigint``,
``type:int`` → ``int``, indexed strings → ``varchar(191)``, other strings →
``longtext``, ``type:text`` → ``text``, ``bool`` → ``boolean`` (``tinyint(1)``),
``gorm.DeletedAt`` → ``datetime(3)`` (new-api only), indexes inside CREATE
TABLE, no foreign key. Rows are seeded with raw SQL, as the gateway would
write them; the service must read them exactly and write nothing.
"""

from __future__ import annotations

from decimal import Decimal

import pymysql
import pytest
from sqlalchemy.engine import make_url

from balance_service import create_app
from balance_service.extensions import db
from balance_service.gateway.tables import TTL, cache
from tests.helpers import recording_receiver

ONE_API_DDL = [
    """CREATE TABLE `users` (`id` bigint AUTO_INCREMENT,`username` varchar(191) UNIQUE,`password` longtext NOT NULL,
    `display_name` varchar(191),`role` int DEFAULT 1,`status` int DEFAULT 1,`email` varchar(191),
    `github_id` varchar(191),`wechat_id` varchar(191),`lark_id` varchar(191),`oidc_id` varchar(191),
    `access_token` char(32),`quota` int DEFAULT 0,`used_quota` int DEFAULT 0,`request_count` int DEFAULT 0,
    `group` varchar(32) DEFAULT 'default',`aff_code` varchar(32),`inviter_id` int,PRIMARY KEY (`id`),
    INDEX `idx_users_username` (`username`),INDEX `idx_users_display_name` (`display_name`),
    INDEX `idx_users_email` (`email`),INDEX `idx_users_github_id` (`github_id`),
    INDEX `idx_users_wechat_id` (`wechat_id`),
    INDEX `idx_users_lark_id` (`lark_id`),INDEX `idx_users_oidc_id` (`oidc_id`),
    UNIQUE INDEX `idx_users_access_token` (`access_token`),UNIQUE INDEX `idx_users_aff_code` (`aff_code`),
    INDEX `idx_users_inviter_id` (`inviter_id`))""",
    """CREATE TABLE `tokens` (`id` bigint AUTO_INCREMENT,`user_id` bigint,`key` char(48),`status` bigint DEFAULT 1,
    `name` varchar(191),`created_time` bigint,`accessed_time` bigint,`expired_time` bigint DEFAULT -1,
    `remain_quota` bigint DEFAULT 0,`unlimited_quota` boolean DEFAULT false,`used_quota` bigint DEFAULT 0,
    `models` text,`subnet` varchar(191) DEFAULT '',PRIMARY KEY (`id`),
    UNIQUE INDEX `idx_tokens_key` (`key`),INDEX `idx_tokens_name` (`name`))""",
]

NEW_API_DDL = [
    """CREATE TABLE `users` (`id` bigint AUTO_INCREMENT,`username` varchar(191) UNIQUE,`password` longtext NOT NULL,
    `display_name` varchar(191),`role` int DEFAULT 1,`status` int DEFAULT 1,`email` varchar(191),
    `github_id` varchar(191),`discord_id` varchar(191),`oidc_id` varchar(191),`wechat_id` varchar(191),
    `telegram_id` varchar(191),`access_token` char(32),`quota` bigint DEFAULT 0,`used_quota` bigint DEFAULT 0,
    `request_count` int DEFAULT 0,`group` varchar(64) DEFAULT 'default',`aff_code` varchar(32),
    `aff_count` int DEFAULT 0,`aff_quota` int DEFAULT 0,`aff_history` int DEFAULT 0,`inviter_id` int,
    `deleted_at` datetime(3) NULL,`linux_do_id` varchar(191),`setting` text,`remark` varchar(255),
    `stripe_customer` varchar(64),`created_at` bigint,`last_login_at` bigint DEFAULT 0,PRIMARY KEY (`id`),
    INDEX `idx_users_username` (`username`),INDEX `idx_users_display_name` (`display_name`),
    INDEX `idx_users_email` (`email`),INDEX `idx_users_github_id` (`github_id`),
    INDEX `idx_users_discord_id` (`discord_id`),INDEX `idx_users_oidc_id` (`oidc_id`),
    INDEX `idx_users_wechat_id` (`wechat_id`),INDEX `idx_users_telegram_id` (`telegram_id`),
    UNIQUE INDEX `idx_users_access_token` (`access_token`),UNIQUE INDEX `idx_users_aff_code` (`aff_code`),
    INDEX `idx_users_inviter_id` (`inviter_id`),INDEX `idx_users_deleted_at` (`deleted_at`),
    INDEX `idx_users_linux_do_id` (`linux_do_id`),INDEX `idx_users_stripe_customer` (`stripe_customer`))""",
    """CREATE TABLE `tokens` (`id` bigint AUTO_INCREMENT,`user_id` bigint,`key` char(48),`status` bigint DEFAULT 1,
    `name` varchar(191),`created_time` bigint,`accessed_time` bigint,`expired_time` bigint DEFAULT -1,
    `remain_quota` bigint DEFAULT 0,`unlimited_quota` boolean,`model_limits_enabled` boolean,
    `model_limits` text,`allow_ips` varchar(191) DEFAULT '',`used_quota` bigint DEFAULT 0,
    `group` varchar(191) DEFAULT '',`deleted_at` datetime(3) NULL,PRIMARY KEY (`id`),
    INDEX `idx_tokens_user_id` (`user_id`),UNIQUE INDEX `idx_tokens_key` (`key`),INDEX `idx_tokens_name` (`name`),
    INDEX `idx_tokens_deleted_at` (`deleted_at`))""",
]


def gateway_key(label: str) -> str:
    """A 48-character key (stored without ``sk-``) that says what it is for."""
    return label.ljust(48, "0")


KEY_RICH = gateway_key("RichAbCdEfGhIjKlMnOpQrStUvWxYz")
KEY_UNLIMITED = gateway_key("Unlimited")
KEY_DISABLED_OWNER = gateway_key("DisabledOwner")
KEY_NO_OWNER = gateway_key("NoOwner")
KEY_SOFT_DELETED = gateway_key("SoftDeleted")
KEY_OWNER_SOFT_DELETED = gateway_key("OwnerSoftDeleted")

USER_COLUMNS = (
    "(`id`,`username`,`password`,`display_name`,`role`,`status`,`email`,`access_token`,"
    "`quota`,`used_quota`,`request_count`,`group`,`aff_code`,`inviter_id`)"
)
TOKEN_COLUMNS = (
    "(`id`,`user_id`,`key`,`status`,`name`,`created_time`,`accessed_time`,`expired_time`,"
    "`remain_quota`,`unlimited_quota`,`used_quota`)"
)
PASSWORD_HASH = "$2a$10$3dXl1Yl0zJ0c5u8k6bJcJe3xH1m2Gm0y0z9w8v7u6t5s4r3q2p1o"


def seed(cur, variant: str, rich_quota: int) -> None:
    """Rows as the gateway writes them: a rich user, a disabled one, keys in every state."""
    users = [
        (
            1,
            "alice",
            PASSWORD_HASH,
            "Alice",
            1,
            1,
            "alice@example.com",
            "a" * 32,
            rich_quota,
            987654321,
            42,
            "vip",
            "Ab1x",
            0,
        ),
        (2, "bob", PASSWORD_HASH, "Bob", 1, 2, "", "b" * 32, 1000, 0, 0, "default", "Bb2y", 1),
    ]
    tokens = [
        (1, 1, KEY_RICH, 1, "rich", 1700000000, 1700000500, -1, 9007199254740993, False, 250000),
        (2, 1, KEY_UNLIMITED, 1, "unlimited", 1700000000, 1700000000, -1, 0, True, 1500000),
        (3, 2, KEY_DISABLED_OWNER, 1, "bob's", 1700000000, 1700000000, -1, 500000, False, 0),
        (4, 99, KEY_NO_OWNER, 1, "orphan", 1700000000, 1700000000, -1, 500000, False, 0),
    ]
    cur.executemany(f"INSERT INTO `users` {USER_COLUMNS} VALUES ({','.join(['%s'] * 14)})", users)
    cur.executemany(f"INSERT INTO `tokens` {TOKEN_COLUMNS} VALUES ({','.join(['%s'] * 11)})", tokens)
    cur.execute("UPDATE `users` SET `email` = NULL WHERE `id` = 2")  # gateways leave unset strings NULL
    if variant == "new-api":
        cur.execute(
            f"INSERT INTO `users` {USER_COLUMNS[:-1]},`deleted_at`) VALUES "
            "(3,'carol','x','Carol',1,1,NULL,NULL,777777,0,0,'default','Cc3z',0,'2026-01-02 03:04:05.678')"
        )
        cur.execute(
            f"INSERT INTO `tokens` {TOKEN_COLUMNS[:-1]},`deleted_at`) VALUES "
            f"(5,1,'{KEY_SOFT_DELETED}',1,'deleted',1,1,-1,500000,0,0,'2026-01-02 03:04:05.678'),"
            f"(6,3,'{KEY_OWNER_SOFT_DELETED}',1,'carol''s',1,1,-1,500000,0,0,NULL)"
        )


def dump(cur) -> tuple:
    """Everything the service could conceivably change: every table, its layout and its rows."""
    cur.execute("SHOW TABLES")
    tables = sorted(row[0] for row in cur.fetchall())
    layout = []
    rows = []
    for table in tables:
        cur.execute(f"SHOW CREATE TABLE `{table}`")
        layout.append(cur.fetchone()[1])
        cur.execute(f"SELECT * FROM `{table}` ORDER BY `id`")
        rows.append(cur.fetchall())
    return tables, layout, rows


@pytest.fixture(params=["one-api", "new-api"])
def gateway(request, empty_mariadb_database):
    """A gateway database of each flavour; yields (flavour, url, cursor of a separate client)."""
    variant = request.param
    url = make_url(empty_mariadb_database)
    conn = pymysql.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password or "",
        database=url.database,
        charset="utf8mb4",
        autocommit=True,
    )
    with conn.cursor() as cur:
        for statement in ONE_API_DDL if variant == "one-api" else NEW_API_DDL:
            cur.execute(statement)
        # one-api keeps quotas in an ``int`` column; new-api's bigint holds more than 2**31.
        seed(cur, variant, 2147483647 if variant == "one-api" else 123456789012)
        yield variant, empty_mariadb_database, cur
    conn.close()


def serve(url: str, **config):
    return create_app({"TESTING": True, "DATABASE_URL": url, **config})


def get(app, path: str, key: str):
    return app.test_client().get(path, headers={"Authorization": f"Bearer sk-{key}"})


def test_both_balance_endpoints_read_a_gorm_mysql_database_exactly_and_write_nothing(gateway):
    variant, url, cur = gateway
    before = dump(cur)
    app = serve(url)

    token = get(app, "/v1/balance", KEY_RICH)
    assert token.status_code == 200
    rich = Decimal("18014398509.481986")  # 9007199254740993 / 500000, not a float's rounding
    assert token.get_json() == {
        "success": True,
        "remain_balance": rich,
        "used_balance": Decimal("0.5"),
        "unlimited_quota": False,
        "unit": "USD",
        "balance": rich,
        "used": Decimal("0.5"),
    }
    account = get(app, "/v1/user/balance", KEY_RICH).get_json()
    expected_balance = Decimal("4294.967294") if variant == "one-api" else Decimal("246913.578024")
    assert account == {
        "success": True,
        "remain_balance": expected_balance,
        "used_balance": Decimal("1975.308642"),
        "unlimited_quota": False,
        "unit": "USD",
        "balance": expected_balance,
        "used": Decimal("1975.308642"),
    }
    unlimited = get(app, "/v1/balance", KEY_UNLIMITED).get_json()
    assert (unlimited["balance"], unlimited["unlimited_quota"], unlimited["used"]) == (-1, True, 3)

    tokens_app = serve(url, BALANCE_UNIT="tokens")
    assert '"balance":9007199254740993' in get(tokens_app, "/v1/balance", KEY_RICH).get_data(as_text=True)

    with app.app_context():
        db.engine.dispose()
    with tokens_app.app_context():
        db.engine.dispose()
    assert dump(cur) == before


def test_refusals_on_a_gorm_mysql_database_write_nothing(gateway):
    variant, url, cur = gateway
    before = dump(cur)
    app = serve(url)

    def refusal(path, key):
        response = get(app, path, key)
        return response.status_code, response.get_json()["message"]

    assert refusal("/v1/user/balance", KEY_DISABLED_OWNER) == (403, "User is disabled")
    assert refusal("/v1/balance", KEY_NO_OWNER)[0] == 404
    for wrong_case in (KEY_RICH.lower(), KEY_RICH.upper(), KEY_RICH.swapcase()):
        assert refusal("/v1/balance", wrong_case) == (401, "Invalid token")
    if variant == "new-api":
        assert refusal("/v1/balance", KEY_SOFT_DELETED) == (401, "Invalid token")
        assert refusal("/v1/user/balance", KEY_SOFT_DELETED) == (401, "Invalid token")
        assert refusal("/v1/user/balance", KEY_OWNER_SOFT_DELETED)[0] == 404
    with app.app_context():
        db.engine.dispose()
    assert dump(cur) == before


@pytest.fixture
def one_api_gateway(empty_mariadb_database):
    """One-api's GORM tables (no deleted_at) with rows; yields (url, cursor of a separate client)."""
    url = make_url(empty_mariadb_database)
    conn = pymysql.connect(
        host=url.host,
        port=url.port,
        user=url.username,
        password=url.password or "",
        database=url.database,
        charset="utf8mb4",
        autocommit=True,
    )
    with conn.cursor() as cur:
        for statement in ONE_API_DDL:
            cur.execute(statement)
        seed(cur, "one-api", 1000)
        yield empty_mariadb_database, cur
    conn.close()


def test_soft_delete_added_to_a_live_database_is_seen_after_a_minute(one_api_gateway, monkeypatch):
    """The one-api → new-api migration adds deleted_at while the service runs; no restart is needed."""
    url, cur = one_api_gateway
    now = [1000.0]
    monkeypatch.setattr(cache, "clock", lambda: now[0])
    app = serve(url)
    assert get(app, "/v1/balance", KEY_RICH).status_code == 200
    for table in ("users", "tokens"):
        cur.execute(f"ALTER TABLE `{table}` ADD COLUMN `deleted_at` datetime(3) NULL")
    cur.execute("UPDATE `tokens` SET `deleted_at` = '2026-01-02 03:04:05.678' WHERE `id` = 1")
    now[0] += TTL + 1
    refused = get(app, "/v1/balance", KEY_RICH)
    assert (refused.status_code, refused.get_json()["message"]) == (401, "Invalid token")
    assert get(app, "/v1/balance", KEY_UNLIMITED).status_code == 200
    with app.app_context():
        db.engine.dispose()


KEY_NULLS = gateway_key("Nulls")


def test_null_gateway_columns_read_as_the_gateways_defaults_everywhere(gateway):
    """GORM leaves columns NULL when a row was written by hand or by an older version."""
    variant, url, cur = gateway
    cur.execute(
        f"INSERT INTO `users` {USER_COLUMNS} VALUES (10,'nully','x','Nully',NULL,NULL,NULL,NULL,"
        "NULL,NULL,NULL,'default','Nn1n',NULL)"
    )
    cur.execute(
        f"INSERT INTO `tokens` {TOKEN_COLUMNS} VALUES (10,10,'{KEY_NULLS}',NULL,'nulls',NULL,NULL,NULL,NULL,NULL,NULL)"
    )
    app = serve(url, ALERT_ALLOW_PRIVATE_TARGETS=True)
    zero = {
        "success": True,
        "remain_balance": 0,
        "used_balance": 0,
        "unlimited_quota": False,
        "unit": "USD",
        "balance": 0,
        "used": 0,
    }
    for path in ("/v1/balance", "/v1/user/balance"):
        response = get(app, path, KEY_NULLS)
        assert (response.status_code, response.get_json()) == (200, zero)
    cur.execute("CREATE TABLE `options` (`key` varchar(191), `value` longtext, PRIMARY KEY (`key`))")
    for token_stat in ("true", "false"):
        cur.execute("REPLACE INTO `options` VALUES ('DisplayTokenStatEnabled', %s)", (token_stat,))
        cache.clear()  # the option changed: read it again at once
        subscription = get(app, "/dashboard/billing/subscription", KEY_NULLS).get_json()
        assert (subscription["hard_limit_usd"], subscription["access_until"]) == (0, 0)
        assert get(app, "/dashboard/billing/usage", KEY_NULLS).get_json()["total_usage"] == 0

    with recording_receiver() as (hook, received):
        runner = app.test_cli_runner()
        assert runner.invoke(args=["init-db"]).exit_code == 0
        for scope in ("account", "token"):
            created = app.test_client().post(
                "/v1/user/balance/alerts",
                json={"threshold": 1, "webhook_url": hook, "scope": scope},
                headers={"Authorization": f"Bearer sk-{KEY_NULLS}"},
            )
            assert created.status_code == 201, created.get_json()
        with app.app_context():  # as `flask check-alerts` runs it
            result = runner.invoke(args=["check-alerts"])
        assert "2 notified" in result.output, result.output
    assert sorted((body["scope"], body["balance"]) for body in received) == [("account", 0), ("token", 0)]
    with app.app_context():
        db.engine.dispose()


def test_alerts_of_a_key_the_gateway_deleted_stop_and_pass_to_the_accounts_other_keys(gateway):
    """one-api removes the key's row, new-api sets deleted_at; alice's other key takes over what was left."""
    variant, url, cur = gateway
    app = serve(url, ALERT_ALLOW_PRIVATE_TARGETS=True)
    runner, client = app.test_cli_runner(), app.test_client()
    assert runner.invoke(args=["init-db"]).exit_code == 0
    with recording_receiver() as (hook, received):
        created = client.post(
            "/v1/user/balance/alerts",
            json={"threshold": 1_000_000, "webhook_url": hook},  # alice has less than that
            headers={"Authorization": f"Bearer sk-{KEY_RICH}"},
        )
        assert created.status_code == 201, created.get_json()
        alert_id = created.get_json()["alert"]["id"]
        if variant == "new-api":
            cur.execute("UPDATE `tokens` SET `deleted_at` = '2026-01-02 03:04:05.678' WHERE `id` = 1")
        else:
            cur.execute("DELETE FROM `tokens` WHERE `id` = 1")
        with app.app_context():  # as `flask check-alerts` runs it
            result = runner.invoke(args=["check-alerts"])
    assert result.exit_code == 0, result.output
    assert "1 created by a key since deleted" in result.output, result.output
    assert received == []
    listed = get(app, "/v1/user/balance/alerts", KEY_UNLIMITED).get_json()["alerts"]
    assert [(a["id"], a["webhook_url"]) for a in listed] == [(alert_id, None)]
    deleted = client.delete(
        f"/v1/user/balance/alerts/{alert_id}", headers={"Authorization": f"Bearer sk-{KEY_UNLIMITED}"}
    )
    assert deleted.status_code == 200
    with app.app_context():
        db.engine.dispose()
