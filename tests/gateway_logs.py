"""The gateway's ``logs`` and ``options`` tables, laid out in a test database as the gateways create them.

The DDL is what GORM emits for new-api's and one-api's ``Log`` models on each
backend (Go ``int`` → ``bigint`` on PostgreSQL and MySQL, indexed strings →
``varchar(191)`` on MySQL, ``text`` elsewhere), with the indexes the gateways
declare: one-api's ``idx_created_at_type``, ``user_id``, ``token_name``, …;
new-api's add ``token_id``, ``idx_created_at_id`` and (2026+) ``idx_user_id_id``.
Rows are written with raw SQL, as the gateway would write them. The service
itself never creates or writes these tables; the tests do, and drop them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import create_engine, text

from balance_service.config import normalize_database_url
from balance_service.extensions import db
from balance_service.gateway.tables import Token

CONSUME, TOPUP, MANAGE, ERROR, REFUND = 2, 1, 3, 5, 6

_COLUMNS = {
    # name: (sqlite, postgresql, mysql), per flavour below
    "new-api": [
        ("id", "integer", "bigserial", "bigint AUTO_INCREMENT"),
        ("user_id", "integer", "bigint", "bigint"),
        ("created_at", "integer", "bigint", "bigint"),
        ("type", "integer", "bigint", "bigint"),
        ("content", "text", "text", "longtext"),
        ("username", "text DEFAULT ''", "text DEFAULT ''", "varchar(191) DEFAULT ''"),
        ("token_name", "text DEFAULT ''", "text DEFAULT ''", "varchar(191) DEFAULT ''"),
        ("model_name", "text DEFAULT ''", "text DEFAULT ''", "varchar(191) DEFAULT ''"),
        ("quota", "integer DEFAULT 0", "bigint DEFAULT 0", "bigint DEFAULT 0"),
        ("prompt_tokens", "integer DEFAULT 0", "bigint DEFAULT 0", "bigint DEFAULT 0"),
        ("completion_tokens", "integer DEFAULT 0", "bigint DEFAULT 0", "bigint DEFAULT 0"),
        ("use_time", "integer DEFAULT 0", "bigint DEFAULT 0", "bigint DEFAULT 0"),
        ("is_stream", "numeric", "boolean", "boolean"),
        ("channel_id", "integer", "bigint", "bigint"),
        ("token_id", "integer DEFAULT 0", "bigint DEFAULT 0", "bigint DEFAULT 0"),
        ("group", "text", "text", "varchar(191)"),
        ("ip", "text DEFAULT ''", "text DEFAULT ''", "varchar(191) DEFAULT ''"),
        ("other", "text", "text", "longtext"),
    ],
    "one-api": [
        ("id", "integer", "bigserial", "bigint AUTO_INCREMENT"),
        ("user_id", "integer", "bigint", "bigint"),
        ("created_at", "integer", "bigint", "bigint"),
        ("type", "integer", "bigint", "bigint"),
        ("content", "text", "text", "longtext"),
        ("username", "text DEFAULT ''", "text DEFAULT ''", "varchar(191) DEFAULT ''"),
        ("token_name", "text DEFAULT ''", "text DEFAULT ''", "varchar(191) DEFAULT ''"),
        ("model_name", "text DEFAULT ''", "text DEFAULT ''", "varchar(191) DEFAULT ''"),
        ("quota", "integer DEFAULT 0", "bigint DEFAULT 0", "bigint DEFAULT 0"),
        ("prompt_tokens", "integer DEFAULT 0", "bigint DEFAULT 0", "bigint DEFAULT 0"),
        ("completion_tokens", "integer DEFAULT 0", "bigint DEFAULT 0", "bigint DEFAULT 0"),
        ("channel_id", "integer", "bigint", "bigint"),
        ("elapsed_time", "integer DEFAULT 0", "bigint DEFAULT 0", "bigint DEFAULT 0"),
        ("is_stream", "numeric DEFAULT false", "boolean DEFAULT false", "boolean DEFAULT false"),
        ("system_prompt_reset", "numeric DEFAULT false", "boolean DEFAULT false", "boolean DEFAULT false"),
    ],
}

_INDEXES = {
    "one-api": [
        ("idx_logs_user_id", ("user_id",)),
        ("idx_created_at_type", ("created_at", "type")),
        ("index_username_model_name", ("model_name", "username")),
        ("idx_logs_token_name", ("token_name",)),
        ("idx_logs_model_name", ("model_name",)),
        ("idx_logs_channel_id", ("channel_id",)),
    ],
    "new-api": [
        ("idx_created_at_id", ("id", "created_at")),
        ("idx_logs_user_id", ("user_id",)),
        ("idx_user_id_id", ("user_id", "id")),
        ("idx_created_at_type", ("created_at", "type")),
        ("idx_logs_username", ("username",)),
        ("index_username_model_name", ("model_name", "username")),
        ("idx_logs_token_name", ("token_name",)),
        ("idx_logs_model_name", ("model_name",)),
        ("idx_logs_channel_id", ("channel_id",)),
        ("idx_logs_token_id", ("token_id",)),
        ("idx_logs_group", ("group",)),
        ("idx_logs_ip", ("ip",)),
    ],
}


def backend_of(url: str) -> str:
    return "postgresql" if url.startswith("postgres") else "mysql" if url.startswith(("mysql", "mariadb")) else "sqlite"


def logs_ddl(flavour: str, backend: str) -> list[str]:
    """CREATE TABLE ``logs`` and its indexes as GORM issues them for ``flavour`` on ``backend``."""
    q = '"' if backend == "postgresql" else "`"
    position = {"sqlite": 1, "postgresql": 2, "mysql": 3}[backend]
    columns = ",".join(f"{q}{c[0]}{q} {c[position]}" for c in _COLUMNS[flavour])
    indexes = _INDEXES[flavour]
    if backend == "mysql":  # GORM's MySQL driver declares the indexes inside CREATE TABLE
        inline = "".join(f",INDEX {q}{name}{q} ({','.join(q + c + q for c in cols)})" for name, cols in indexes)
        return [f"CREATE TABLE {q}logs{q} ({columns},PRIMARY KEY ({q}id{q}){inline})"]
    statements = [f"CREATE TABLE {q}logs{q} ({columns},PRIMARY KEY ({q}id{q}))"]
    for name, cols in indexes:
        statements.append(f"CREATE INDEX {q}{name}{q} ON {q}logs{q}({','.join(q + c + q for c in cols)})")
    return statements


def options_ddl(backend: str) -> str:
    if backend == "postgresql":
        return 'CREATE TABLE "options" ("key" text,"value" text,PRIMARY KEY ("key"))'
    if backend == "mysql":
        return "CREATE TABLE `options` (`key` varchar(191),`value` longtext,PRIMARY KEY (`key`))"
    return "CREATE TABLE `options` (`key` text,`value` text,PRIMARY KEY (`key`))"


def at(text_time: str) -> int:
    """``"2025-11-01 00:00:00"`` (UTC) → Unix seconds."""
    return int(datetime.fromisoformat(text_time).replace(tzinfo=UTC).timestamp())


@dataclass
class Log:
    """One row as the gateway writes it; ``token_id`` is left out of one-api's table."""

    user_id: int
    created_at: int
    type: int
    quota: int = 0
    model_name: str = ""
    token_name: str = ""
    token_id: int = 0
    content: str = ""


class GatewayTables:
    """The gateway's ``logs`` (and ``options``) in one test database; ``drop()`` removes what was created."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.backend = backend_of(url)
        self.engine = create_engine(normalize_database_url(url))
        self.flavour: str | None = None
        self.created: list[str] = []

    def create_logs(self, flavour: str) -> GatewayTables:
        self.flavour = flavour
        with self.engine.begin() as conn:
            for statement in logs_ddl(flavour, self.backend):
                conn.execute(text(statement))
        self.created.append("logs")
        return self

    def add(self, rows: Iterable[Log]) -> None:
        names = ["user_id", "created_at", "type", "quota", "model_name", "token_name", "content", "username"]
        if self.flavour == "new-api":
            names.append("token_id")
        values = [
            {**{n: getattr(r, n) for n in names if n != "username"}, "username": f"user{r.user_id}"} for r in rows
        ]
        statement = f"INSERT INTO logs ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)})"
        with self.engine.begin() as conn:
            conn.execute(text(statement), values)

    def set_options(self, values: dict[str, str]) -> None:
        """Rows of ``options``, key → value; the table is created on first use."""
        with self.engine.begin() as conn:
            if "options" not in self.created:
                conn.execute(text(options_ddl(self.backend)))
                self.created.append("options")
            key = '"key"' if self.backend != "mysql" else "`key`"
            for name, value in values.items():
                conn.execute(text(f"DELETE FROM options WHERE {key} = :k"), {"k": name})
                conn.execute(text(f"INSERT INTO options ({key}, value) VALUES (:k, :v)"), {"k": name, "v": value})

    def dump(self) -> dict[str, list[tuple]]:
        with self.engine.connect() as conn:
            return {t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY 1"))] for t in self.created}

    def execute(self, statement: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(statement))

    def drop(self) -> None:
        with self.engine.begin() as conn:
            for table in reversed(self.created):
                conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
        self.created.clear()
        self.engine.dispose()


# --- one shared ledger ---------------------------------------------------------------------------------------------


@dataclass
class November:
    """Alice (keys ``work``, ``home`` and a second ``work``) and Bob (his own ``work``), with their keys and ids."""

    alice: int
    bob: int
    work: str
    home: str
    work2: str
    bob_work: str
    ids: dict[str, int]


def token_id(app, key: str) -> int:
    """The id of the key ``sk-…`` (what new-api writes to ``logs.token_id``)."""
    with app.app_context():
        return db.session.execute(db.select(Token.id).where(Token.key == key.removeprefix("sk-"))).scalar_one()


def seed_november(app, create_user, create_token, tables: GatewayTables) -> November:
    """Rows around October 31 → November → December 1 (UTC), in quota units (500000 = 1 USD).

    Per key and month, November [2025-11-01, 2025-12-01):
    - ``work``: 100000 + 1234 + 500000 consumed, 20000 refunded (new-api) → 581234; one-api cannot tell
      ``work`` from ``work2`` (same name, no token_id) → 606234 there, without the refund;
    - ``home``: 50000; ``work2``: 5000; Alice's account: 636234 (new-api), 656234 (one-api);
    - Bob's ``work``: 777777, never Alice's.
    October 31 23:59:59: 250000 (``work``); December 1 00:00:00: 300000 (``work``). Top-up, manage and
    error rows carry quota that must not count (the manage row 123456 on purpose).
    """
    alice = create_user(username="alice", quota=700000, used_quota=9999999)
    bob = create_user(username="bob", quota=5000000)
    keys = {
        "work": create_token(user_id=alice, name="work", remain_quota=400000, used_quota=8888888),
        "home": create_token(user_id=alice, name="home", remain_quota=100000, used_quota=7777777),
        "work2": create_token(user_id=alice, name="work", remain_quota=100000, used_quota=6666666),
        "bob_work": create_token(user_id=bob, name="work", remain_quota=100000, used_quota=5555555),
    }
    ids = {name: token_id(app, key) for name, key in keys.items()}
    work, home, work2 = ids["work"], ids["home"], ids["work2"]
    rows = [
        Log(alice, at("2025-10-31 23:59:59"), CONSUME, 250000, "gpt-4o", "work", work),
        Log(alice, at("2025-11-01 00:00:00"), CONSUME, 100000, "gpt-4o", "work", work),
        Log(alice, at("2025-11-01 12:00:00"), CONSUME, 50000, "claude-3", "home", home),
        Log(alice, at("2025-11-02 08:00:00"), TOPUP, 0, content="top-up of 10 USD"),
        Log(alice, at("2025-11-02 08:30:00"), MANAGE, 123456, content="quota set by an admin"),
        Log(alice, at("2025-11-02 09:00:00"), ERROR, 0, "gpt-4o", "work", work),
        Log(alice, at("2025-11-15 10:00:00"), CONSUME, 1234, "gpt-4o-mini", "work", work),
        Log(alice, at("2025-11-20 10:00:00"), CONSUME, 5000, "gpt-4o", "work", work2),
        Log(alice, at("2025-11-30 23:59:59"), CONSUME, 500000, "gpt-4o", "work", work),
        Log(alice, at("2025-12-01 00:00:00"), CONSUME, 300000, "gpt-4o", "work", work),
        Log(bob, at("2025-11-01 10:00:00"), CONSUME, 777777, "gpt-4o", "work", ids["bob_work"]),
    ]
    if tables.flavour == "new-api":  # one-api has no refund rows
        rows.append(Log(alice, at("2025-11-01 13:00:00"), REFUND, 20000, "gpt-4o", "work", work))
    tables.add(rows)
    return November(alice, bob, keys["work"], keys["home"], keys["work2"], keys["bob_work"], ids)
