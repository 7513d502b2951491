"""Where usage figures come from: the gateway's ``logs`` table, behind one small interface.

Everything the service knows about spend over time goes through a ``LogSource``:
``daily_usage`` (net quota and requests per UTC day and model) and ``net_spend``
(one total). ``SqlLogSource`` reads the gateway's ``logs`` table on the main
database or on ``LOG_DATABASE_URL``; ``ClickHouseLogSource`` (usage/clickhouse.py)
reads it in ClickHouse when ``LOG_DATABASE_URL`` is a ``clickhouse://`` URL.
Another store (new-api's hourly ``quota_data``) only has to answer the same
three questions, and ``log_source()`` is the one place that picks the
implementation.

Nothing here writes. The ``logs`` and ``options`` tables are described on a
``MetaData`` of their own, so ``db.create_all()`` never creates them.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Protocol

from flask import current_app
from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Engine,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    Text,
    and_,
    case,
    func,
    inspect,
    literal_column,
    select,
)

from ..config import DB_CONNECT_TIMEOUT, is_clickhouse_url, settings
from ..extensions import db
from ..models import exact_string

#: The gateways' log types that move money (gateway-schema.md): a consume row spends its
#: quota, a refund row (new-api) gives its quota back.
LOG_CONSUME, LOG_REFUND = 2, 6

#: The Flask-SQLAlchemy bind that ``LOG_DATABASE_URL`` configures (config.finalize).
LOG_BIND = "logs"

SECONDS_PER_DAY = 86400
EPOCH = date(1970, 1, 1)

#: How long a table layout (which tables and columns exist) is trusted before it is read again:
#: a gateway installed or upgraded next to a running service is noticed within this time.
LAYOUT_TTL = 60.0

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
options = Table("options", _gateway, Column("key", String(191), primary_key=True), Column("value", Text))


@dataclass(frozen=True)
class Scope:
    """Whose spend: an account (``token_id is None``) or one of its keys.

    A key is named both ways because the gateways differ: new-api logs the
    key's id (``token_id``), one-api only its owner and name (``token_name``,
    which need not be unique within an account).
    """

    user_id: int
    token_id: int | None = None
    token_name: str | None = None

    @property
    def is_key(self) -> bool:
        return self.token_id is not None


@dataclass(frozen=True)
class UsageRow:
    """Net spend of one model on one UTC day: consume quota minus refunded quota; ``requests`` counts consume rows."""

    day: date
    model: str
    net_quota: int
    requests: int


class LogSource(Protocol):
    """What the usage endpoints need from a log store. Days are UTC; ``start`` inclusive, ``end`` exclusive."""

    def has_logs(self) -> bool:
        """Whether the store holds the gateway's request logs at all (a ``logs`` table)."""

    def daily_usage(self, scope: Scope, start: date, end: date) -> list[UsageRow]:
        """Rows with any consume or refund in the range, one per (day, model), in no particular order."""

    def net_spend(self, scope: Scope, start: date, end: date) -> int:
        """Σ consume quota − Σ refund quota in the range, in quota units (0 when nothing happened)."""


def day_start(day: date) -> int:
    """Unix seconds at 00:00 UTC of ``day`` (the unit of ``logs.created_at``)."""
    return (day - EPOCH).days * SECONDS_PER_DAY


class _Layout:
    """Columns of a few tables per engine, read with the inspector and trusted for ``LAYOUT_TTL`` seconds."""

    def __init__(self) -> None:
        self._seen: weakref.WeakKeyDictionary[Engine, dict[str, tuple[float, frozenset[str] | None]]] = (
            weakref.WeakKeyDictionary()
        )

    def columns(self, engine: Engine, table: str) -> frozenset[str] | None:
        """The table's column names, or None when it does not exist. A failed inspection raises, uncached."""
        now = time.monotonic()
        cached = self._seen.get(engine, {}).get(table)
        if cached is not None and now - cached[0] < LAYOUT_TTL:
            return cached[1]
        inspector = inspect(engine)
        found = frozenset(c["name"] for c in inspector.get_columns(table)) if inspector.has_table(table) else None
        self._seen.setdefault(engine, {})[table] = (now, found)
        return found


layout = _Layout()


class SqlLogSource:
    """The gateway's ``logs`` table in a SQL database (SQLite, PostgreSQL, MySQL/MariaDB).

    Every query filters on ``user_id`` or ``token_id`` and a ``created_at``
    range and groups in the database, so it can use an index on
    ``(user_id, created_at)`` / ``(token_id, created_at)`` (``flask doctor``
    prints the statement) and otherwise the gateways' own single-column ones.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _columns(self) -> frozenset[str] | None:
        return layout.columns(self.engine, logs.name)

    def has_logs(self) -> bool:
        return self._columns() is not None

    def _where(self, scope: Scope, start: date, end: date) -> ColumnElement[bool]:
        c = logs.c
        if not scope.is_key:
            who = [c.user_id == scope.user_id]
        elif "token_id" in (self._columns() or ()):  # new-api: the key's id alone (index on token_id, created_at)
            who = [c.token_id == scope.token_id]
        else:  # one-api: no token_id; the key's rows carry its owner and its name (exact, case and all)
            who = [c.user_id == scope.user_id, c.token_name == exact_string(scope.token_name or "")]
        return and_(
            *who,
            c.created_at >= day_start(start),
            c.created_at < day_start(end),
            c.type.in_([LOG_CONSUME, LOG_REFUND]),
        )

    @staticmethod
    def _net() -> ColumnElement[int]:
        # Constants are inlined: PostgreSQL would not match a GROUP BY parameter to a SELECT one.
        consume = literal_column(str(LOG_CONSUME), Integer)
        return func.sum(case((logs.c.type == consume, logs.c.quota), else_=-logs.c.quota))

    def daily_statement(self, scope: Scope, start: date, end: date) -> Select:
        """``SELECT day, model_name, net quota, requests … GROUP BY day, model_name`` (also for EXPLAIN)."""
        c = logs.c
        day = c.created_at // literal_column(str(SECONDS_PER_DAY), BigInteger)
        consume = literal_column(str(LOG_CONSUME), Integer)
        requests = func.sum(case((c.type == consume, literal_column("1", Integer)), else_=literal_column("0", Integer)))
        return (
            select(day, c.model_name, self._net(), requests)
            .where(self._where(scope, start, end))
            .group_by(day, c.model_name)
        )

    def daily_usage(self, scope: Scope, start: date, end: date) -> list[UsageRow]:
        with self.engine.connect() as connection:
            rows = connection.execute(self.daily_statement(scope, start, end)).all()
        return [
            UsageRow(EPOCH + timedelta(days=int(d)), model or "", int(net or 0), int(n or 0))
            for d, model, net, n in rows
        ]

    def net_spend(self, scope: Scope, start: date, end: date) -> int:
        stmt = select(self._net()).where(self._where(scope, start, end))
        with self.engine.connect() as connection:
            return int(connection.execute(stmt).scalar() or 0)


def log_engine() -> Engine:
    """The engine of ``LOG_DATABASE_URL`` when set, else the main database's (one pool, not two)."""
    return db.engines.get(LOG_BIND) or db.engine


#: Where an app keeps its ClickHouse log source (one connection pool per app and process).
CLICKHOUSE_EXTENSION = "balance_service.clickhouse_logs"


def log_source() -> LogSource:
    """The log store of the current app: the one place to choose another implementation."""
    url = settings().log_database_url or ""
    if not is_clickhouse_url(url):
        return SqlLogSource(log_engine())
    source = current_app.extensions.get(CLICKHOUSE_EXTENSION)
    if source is None:
        from .clickhouse import ClickHouseLogSource, ClickHousePool, client_options  # the driver only when used

        pool = ClickHousePool(*client_options(url, DB_CONNECT_TIMEOUT, settings().db_statement_timeout_ms))
        source = current_app.extensions.setdefault(CLICKHOUSE_EXTENSION, ClickHouseLogSource(pool))
    return source


def consume_logging_enabled() -> bool:
    """The gateway's ``LogConsumeEnabled`` option, from ``options`` in the main database.

    A missing table or row is the gateway's default (on); like the gateway,
    any stored value other than ``true`` means off.
    """
    engine = db.engine
    if layout.columns(engine, options.name) is None:
        return True
    stmt = select(options.c.value).where(options.c.key == "LogConsumeEnabled")
    with engine.connect() as connection:
        value = connection.execute(stmt).scalar()
    return value is None or value == "true"
