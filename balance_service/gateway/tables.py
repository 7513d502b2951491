"""The gateway's own tables (one-api / new-api), read as the gateway writes them, and what is cached of them.

``users`` and ``tokens`` are models (``flask init-db`` creates them for a
standalone install); ``logs`` and ``options`` are described on a ``MetaData``
of their own, so ``db.create_all()`` never creates them. Only the columns the
service uses are declared. There is no foreign key: the gateway does not create one.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CHAR,
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    inspect,
    literal,
    true,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.orm.util import AliasedClass
from sqlalchemy.sql.functions import FunctionElement

from ..extensions import db

log = logging.getLogger(__name__)

# Gateway status codes, see docs/gateway-schema.md.
USER_ENABLED, USER_DISABLED = 1, 2
TOKEN_ENABLED, TOKEN_DISABLED, TOKEN_EXPIRED, TOKEN_EXHAUSTED = 1, 2, 3, 4
NEVER_EXPIRES = -1
ROLE_COMMON, ROLE_ADMIN, ROLE_ROOT = 1, 10, 100
#: The log types that move money: a consume row spends its quota, a refund row (new-api) gives it back.
LOG_CONSUME, LOG_REFUND = 2, 6


class User(db.Model):
    """A gateway account; ``quota`` is what is left, ``used_quota`` what was spent."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(64), default="")
    role: Mapped[int] = mapped_column(Integer, default=ROLE_COMMON)
    status: Mapped[int] = mapped_column(Integer, default=USER_ENABLED)
    quota: Mapped[int] = mapped_column(BigInteger, default=0)
    used_quota: Mapped[int] = mapped_column(BigInteger, default=0)
    request_count: Mapped[int] = mapped_column(Integer, default=0)
    # "group" is a reserved word; SQLAlchemy quotes it for every dialect.
    group: Mapped[str] = mapped_column("group", String(32), default="default")
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True, index=True)

    def __repr__(self) -> str:
        return f"<User {self.id} {self.username!r}>"


class Token(db.Model):
    """One API key; ``key`` is stored without the ``sk-`` prefix."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer, index=True)
    key: Mapped[str] = mapped_column(CHAR(48), unique=True)
    status: Mapped[int] = mapped_column(Integer, default=TOKEN_ENABLED)
    name: Mapped[str] = mapped_column(String(64), default="")
    created_time: Mapped[int] = mapped_column(BigInteger, default=0)
    accessed_time: Mapped[int] = mapped_column(BigInteger, default=0)
    expired_time: Mapped[int] = mapped_column(BigInteger, default=NEVER_EXPIRES)
    remain_quota: Mapped[int] = mapped_column(BigInteger, default=0)
    unlimited_quota: Mapped[bool] = mapped_column(Boolean, default=False)
    used_quota: Mapped[int] = mapped_column(BigInteger, default=0)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True, index=True)

    def __repr__(self) -> str:
        # Never the key: reprs end up in logs and tracebacks.
        return f"<Token {self.id} of user {self.user_id}>"


class exact_string(FunctionElement):
    """A bound string that an ``=`` must match byte for byte, on every backend.

    MySQL and MariaDB compare strings with the column's collation, which is
    case-insensitive and PAD SPACE by default (``utf8mb4_general_ci``): there,
    ``key = 'abc'`` would also find ``ABC``. Casting the *value* to BINARY makes
    the comparison binary (exact case, trailing spaces significant) while the
    column stays bare, so the unique index on ``tokens.key`` is still used
    (EXPLAIN: ``const``), whatever the table's character set. SQLite's and
    PostgreSQL's ``=`` is already exact, so elsewhere the value is left as is.
    """

    type = String()
    name = "exact_string"
    inherit_cache = True


@compiles(exact_string)
def _exact_string_default(element: exact_string, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(exact_string, "mysql")
@compiles(exact_string, "mariadb")
def _exact_string_mysql(element: exact_string, compiler: Any, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS BINARY)"


def or_default(column: Any) -> ColumnElement[Any]:
    """The column's value, or the gateway's default where it is NULL, labelled with the column's name.

    The gateways declare these columns with a DEFAULT but not NOT NULL, so a
    row written by hand, by an older version or by another tool can hold NULL;
    the gateway then reads its default, the one mapped above. ``column`` may be
    an attribute of an ``aliased()`` model: the default comes from the model.
    """
    mapped = column.property.columns[0] if hasattr(column, "property") else column  # a mapped attribute
    default = mapped.default.arg if mapped.default is not None else None
    if default is None or callable(default):
        return column.label(mapped.key)
    return func.coalesce(column, literal(default, type_=mapped.type)).label(mapped.key)


def live(model: type[Token] | type[User] | AliasedClass[Any], soft_delete: bool) -> ColumnElement[bool]:
    """``deleted_at IS NULL`` where the table has soft delete (new-api), else TRUE (one-api)."""
    return model.deleted_at.is_(None) if soft_delete else true()


_gateway = MetaData()  # never passed to create_all: these tables belong to the gateway
logs = Table(
    "logs",
    _gateway,
    Column("id", BigInteger, primary_key=True),
    Column("user_id", Integer),
    Column("created_at", BigInteger),
    Column("type", Integer),
    Column("token_name", String(191)),
    Column("token_id", Integer),
    Column("model_name", String(191)),
    Column("quota", BigInteger),
)
#: ``key`` is a reserved word: SQLAlchemy quotes it for each dialect.
options = Table("options", _gateway, Column("key", String(191), primary_key=True), Column("value", Text))

#: Seconds a value read from the gateway (a table's columns, the options) is trusted: a gateway
#: upgraded next to a running service, or a setting changed in its admin panel, shows within this time.
TTL = 60.0


class GatewayCache:
    """Values read from the gateway, per engine (or log store) and name, each trusted for ``TTL`` seconds.

    One thread re-reads a stale value while the others wait for its answer. A
    failed re-read keeps the last value until the next attempt; a failed first
    read raises and caches nothing.
    """

    def __init__(self, ttl: float = TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._values: weakref.WeakKeyDictionary[Any, dict[str, tuple[float, Any]]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self, owner: Any, name: str, load: Callable[[], Any]) -> Any:
        cached = self._values.get(owner, {}).get(name)
        if cached is not None and self.clock() < cached[0]:
            return cached[1]
        with self._lock:
            cached = self._values.get(owner, {}).get(name)
            if cached is not None and self.clock() < cached[0]:
                return cached[1]
            try:
                value = load()
            except SQLAlchemyError as e:
                if cached is None:
                    raise
                log.warning("could not re-read the gateway's %s, keeping the last one: %s", name, type(e).__name__)
                value = cached[1]
            self._values.setdefault(owner, {})[name] = (self.clock() + self.ttl, value)
            return value

    def clear(self) -> None:
        self._values.clear()


cache = GatewayCache()


def columns(engine: Engine, table: str) -> frozenset[str] | None:
    """The table's column names, or None when it does not exist (cached)."""

    def load() -> frozenset[str] | None:
        inspector = inspect(engine)
        return frozenset(c["name"] for c in inspector.get_columns(table)) if inspector.has_table(table) else None

    return cache.get(engine, f"{table} columns", load)


def soft_delete_columns(engine: Engine) -> tuple[bool, bool]:
    """Whether ``tokens`` and ``users`` have ``deleted_at`` (new-api has it, one-api does not).

    Read again after ``TTL``: migrating from one-api to new-api adds the column
    to a live database, and deleted keys must stop working without a restart.
    """
    tokens, users = ("deleted_at" in (columns(engine, model.__tablename__) or ()) for model in (Token, User))
    return tokens, users
