"""The gateway's own ``users`` and ``tokens`` tables (one-api / new-api), read as the gateway writes them.

Only the columns the service uses are mapped; a gateway database has more and
that is fine. There is no foreign key: the gateway does not create one.
"""

from __future__ import annotations

import time
import weakref
from datetime import datetime
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy import (
    CHAR,
    BigInteger,
    Boolean,
    ColumnElement,
    DateTime,
    Engine,
    Integer,
    String,
    func,
    inspect,
    literal,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.orm.util import AliasedClass
from sqlalchemy.sql.functions import FunctionElement

from .extensions import db

# Gateway status codes, see docs/gateway-schema.md.
USER_ENABLED, USER_DISABLED = 1, 2
TOKEN_ENABLED, TOKEN_DISABLED, TOKEN_EXPIRED, TOKEN_EXHAUSTED = 1, 2, 3, 4
NEVER_EXPIRES = -1
ROLE_COMMON, ROLE_ADMIN, ROLE_ROOT = 1, 10, 100


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


def key_equals(key: str) -> ColumnElement[bool]:
    """``tokens.key = <key>``, exact and case-sensitive on every backend (see ``exact_string``)."""
    return Token.key == exact_string(key)


def or_default(column: Any) -> ColumnElement[Any]:
    """The column's value, or the gateway's default where it is NULL, labelled with the column's name.

    The gateways declare these columns with a DEFAULT but not NOT NULL, so a
    row written by hand, by an older version or by another tool can hold NULL;
    the gateway then reads its default (Go's zero value or the DEFAULT). The
    defaults are the ones mapped above (``mapped_column(default=...)``).
    ``column`` may be an attribute of an ``aliased()`` model (the same table
    joined twice): the default comes from the model, the value from the alias.
    """
    mapped = column.property.columns[0] if hasattr(column, "property") else column  # a mapped attribute
    default = mapped.default.arg if mapped.default is not None else None
    if default is None or callable(default):
        return column.label(mapped.key)
    return func.coalesce(column, literal(default, type_=mapped.type)).label(mapped.key)


def live(model: type[Token] | type[User] | AliasedClass[Any], soft_delete: bool) -> ColumnElement[bool]:
    """``deleted_at IS NULL`` where the table has soft delete (new-api), else TRUE (one-api).

    ``model`` may be an ``aliased()`` one, for a table joined twice.
    """
    return model.deleted_at.is_(None) if soft_delete else true()


#: Seconds a detected table layout is trusted when the app sets no GATEWAY_LAYOUT_TTL.
DEFAULT_LAYOUT_TTL = 300
#: engine → (time.monotonic() of the inspection, (tokens have deleted_at, users have deleted_at))
_layouts: weakref.WeakKeyDictionary[Engine, tuple[float, tuple[bool, bool]]] = weakref.WeakKeyDictionary()


def soft_delete_columns(engine: Engine) -> tuple[bool, bool]:
    """Whether ``tokens`` and ``users`` have ``deleted_at`` (new-api has it, one-api does not).

    Cached per engine so a balance lookup stays one statement, and inspected
    again once the answer is ``GATEWAY_LAYOUT_TTL`` seconds old: migrating
    from one-api to new-api adds the column to a live database, and deleted
    keys must stop working without a restart. A failed inspection raises and
    is not cached, so it is retried next time.
    """
    ttl = current_app.config.get("GATEWAY_LAYOUT_TTL", DEFAULT_LAYOUT_TTL) if has_app_context() else DEFAULT_LAYOUT_TTL
    now = time.monotonic()
    cached = _layouts.get(engine)
    if cached is not None and now - cached[0] < ttl:
        return cached[1]
    inspector = inspect(engine)
    tokens, users = (
        any(column["name"] == "deleted_at" for column in inspector.get_columns(table))
        for table in (Token.__tablename__, User.__tablename__)
    )
    _layouts[engine] = (now, (tokens, users))
    return tokens, users
