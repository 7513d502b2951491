"""The gateway's ``logs`` table as the usage figures read it: whose rows, which days, net spend.

``SqlLogSource`` queries it in a SQL database (the main one or ``LOG_DATABASE_URL``);
the ``clickhouse_*`` functions write the same queries in ClickHouse's SQL for
``usage/clickhouse.py``, which only runs them. Both answer the questions of
``usage.source.LogSource``. ``SqlLogSource`` also reads the rows after a log id
(``after_id``) and sums an id range per day, account, key and model
(``rollup_statement``), for the roll-up in ``usage/rollup.py``. Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Engine,
    Integer,
    Row,
    Select,
    String,
    and_,
    case,
    func,
    literal_column,
    select,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from .._internal import db_deadline
from .tables import LOG_CONSUME, LOG_REFUND, columns, exact_string, logs

SECONDS_PER_DAY = 86400
EPOCH = date(1970, 1, 1)


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


def day_start(day: date) -> int:
    """Unix seconds at 00:00 UTC of ``day`` (the unit of ``logs.created_at``)."""
    return (day - EPOCH).days * SECONDS_PER_DAY


def usage_rows(rows: Iterable[tuple[Any, ...]]) -> list[UsageRow]:
    """``(day number, model, net quota, requests)`` rows of either store as ``UsageRow``s."""
    return [UsageRow(EPOCH + timedelta(days=int(d)), as_text(m), int(net or 0), int(n or 0)) for d, m, net, n in rows]


def as_text(value: str | bytes | None) -> str:
    """A name read through ``exact_name`` (bytes on MySQL/MariaDB) as text; NULL as ``''``."""
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8")
    return value or ""


class exact_name(FunctionElement):
    """A string column grouped byte for byte on every backend (``GROUP BY exact_name(model_name)``).

    MySQL's and MariaDB's usual collations group ``gpt-4o``, ``GPT-4o`` and
    ``gpt-4o `` together under one of the three names; the gateway bills
    them as three models, and the usage roll-up keeps them apart. There the
    column is read as its UTF-8 bytes (``as_text`` decodes them); SQLite's and
    PostgreSQL's grouping is already exact, so elsewhere it is left as is.
    """

    type = String()
    name = "exact_name"
    inherit_cache = True


@compiles(exact_name)
def _exact_name_default(element: exact_name, compiler: Any, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(exact_name, "mysql")
@compiles(exact_name, "mariadb")
def _exact_name_mysql(element: exact_name, compiler: Any, **kw: Any) -> str:
    return f"CAST(CONVERT({compiler.process(element.clauses, **kw)} USING utf8mb4) AS BINARY)"


class SqlLogSource:
    """The gateway's ``logs`` table in a SQL database (SQLite, PostgreSQL, MySQL/MariaDB).

    Every query filters on ``user_id`` or ``token_id`` and a ``created_at``
    range and groups in the database, so it can use an index on
    ``(user_id, created_at)`` / ``(token_id, created_at)`` (``flask doctor``
    prints the statement) and otherwise the gateways' own single-column ones.

    ``query_timeout_ms``: how long each of the sums (usage, spend, roll-up)
    may take (``config.Settings.log_statement_timeout_ms``). Looking the table
    up and its last id keep the engine's own statement timeout.
    """

    def __init__(self, engine: Engine, query_timeout_ms: int) -> None:
        self.engine = engine
        self.query_timeout_ms = query_timeout_ms

    def _rows(self, statement: Select) -> list[Row]:
        """The rows of one of the sums, run with ``query_timeout_ms``."""
        with db_deadline.connect(self.engine, self.query_timeout_ms) as connection:
            return list(connection.execute(statement).all())

    def _columns(self) -> frozenset[str] | None:
        return columns(self.engine, logs.name)

    def has_logs(self) -> bool:
        return self._columns() is not None

    def has_token_id(self) -> bool:
        """Whether a key's rows carry its id (new-api) rather than only its owner and name (one-api)."""
        return "token_id" in (self._columns() or ())

    def _where(self, scope: Scope, start: date, end: date, after_id: int = 0) -> ColumnElement[bool]:
        c = logs.c
        # Rows the roll-up has not summed yet: found by (user_id, id) or the primary key, whatever the range.
        newer = [c.id > after_id] if after_id else []
        return and_(
            scope_rows(c, scope, self.has_token_id()),
            *newer,
            c.created_at >= day_start(start),
            c.created_at < day_start(end),
            c.type.in_([LOG_CONSUME, LOG_REFUND]),
        )

    @staticmethod
    def _net() -> ColumnElement[int]:
        # Constants are inlined: PostgreSQL would not match a GROUP BY parameter to a SELECT one.
        consume = literal_column(str(LOG_CONSUME), Integer)
        return func.sum(case((logs.c.type == consume, logs.c.quota), else_=-logs.c.quota))

    def daily_statement(self, scope: Scope, start: date, end: date, after_id: int = 0) -> Select:
        """``SELECT day, model_name, net quota, requests … GROUP BY day, model_name`` (also for EXPLAIN).

        ``after_id``: only rows with a larger ``id`` (0: all), the part the roll-up does not hold yet.
        """
        day, model = _day(), exact_name(logs.c.model_name)
        return (
            select(day, model, self._net(), _count_of(LOG_CONSUME))
            .where(self._where(scope, start, end, after_id))
            .group_by(day, model)
        )

    def daily_usage(self, scope: Scope, start: date, end: date, after_id: int = 0) -> list[UsageRow]:
        return usage_rows(self._rows(self.daily_statement(scope, start, end, after_id)))

    def net_spend(self, scope: Scope, start: date, end: date, after_id: int = 0) -> int:
        rows = self._rows(select(self._net()).where(self._where(scope, start, end, after_id)))
        return int(rows[0][0] or 0)

    def last_id(self) -> int:
        """The largest ``id`` in ``logs`` now (0 for an empty table): one look at the primary key."""
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.max(logs.c.id))).scalar() or 0)

    def rollup_statement(self, after_id: int, upto_id: int) -> Select:
        """Consume and refund sums of the rows with ``after_id < id <= upto_id``, whatever their day.

        One row per (day, user_id, token_id, token_name, model_name), read on the
        primary key's range: ``(day, user_id, token_id, token_name, model_name,
        consumed, refunded, requests)``. ``token_id`` is 0 on one-api's table,
        which has none; names are grouped byte for byte (``exact_name``);
        NULLs are left for the caller to fold.
        """
        c = logs.c
        day = _day()
        has_token_id = self.has_token_id()
        token_id = c.token_id if has_token_id else literal_column("0", Integer)
        names = [exact_name(c.token_name), exact_name(c.model_name)]
        grouped = [day, c.user_id, *([c.token_id] if has_token_id else []), *names]
        sums = (_sum_of(LOG_CONSUME), _sum_of(LOG_REFUND), _count_of(LOG_CONSUME))
        return (
            select(day, c.user_id, token_id, *names, *sums)
            .where(
                c.id > after_id,
                c.id <= upto_id,
                c.created_at.is_not(None),
                c.type.in_([LOG_CONSUME, LOG_REFUND]),
            )
            .group_by(*grouped)
        )

    def rollup_rows(self, after_id: int, upto_id: int) -> list[Row]:
        """The rows of :meth:`rollup_statement`."""
        return self._rows(self.rollup_statement(after_id, upto_id))


def scope_rows(c: Any, scope: Scope, has_token_id: bool) -> ColumnElement[bool]:
    """The rows of ``scope`` among columns ``c`` (``user_id``, ``token_id``, ``token_name``): the logs' or the
    roll-up's. An account's by ``user_id``; a key's by ``token_id`` where the gateway writes it (new-api), else
    (one-api) by its owner and its exact name, case and all."""
    if not scope.is_key:
        return c.user_id == scope.user_id
    if has_token_id:
        return c.token_id == scope.token_id
    return and_(c.user_id == scope.user_id, c.token_name == exact_string(scope.token_name or ""))


def _day() -> ColumnElement[int]:
    """The UTC day number of a row (``created_at // 86400``), written the same way in every query."""
    return logs.c.created_at // literal_column(str(SECONDS_PER_DAY), BigInteger)


def _sum_of(log_type: int) -> ColumnElement[int]:
    """Σ quota of the rows of one type (constants inlined, see ``_net``)."""
    kind = literal_column(str(log_type), Integer)
    return func.sum(case((logs.c.type == kind, logs.c.quota), else_=literal_column("0", Integer)))


def _count_of(log_type: int) -> ColumnElement[int]:
    """How many rows of one type."""
    kind = literal_column(str(log_type), Integer)
    one, zero = literal_column("1", Integer), literal_column("0", Integer)
    return func.sum(case((logs.c.type == kind, one), else_=zero))


#: The columns of ``logs`` in the connection's ClickHouse database (no rows: no such table).
CLICKHOUSE_COLUMNS = (
    "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = %(table)s",
    {"table": logs.name},
)
_NET = "sumIf(quota, type = %(consume)s) - sumIf(quota, type = %(refund)s)"
_REQUESTS = "countIf(type = %(consume)s)"


def _clickhouse_where(scope: Scope, start: date, end: date, found: frozenset[str]) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {
        "start": day_start(start),
        "end": day_start(end),
        "consume": LOG_CONSUME,
        "refund": LOG_REFUND,
    }
    if not scope.is_key:
        who = "user_id = %(user_id)s"
        params["user_id"] = scope.user_id
    elif "token_id" in found:
        who = "token_id = %(token_id)s"
        params["token_id"] = scope.token_id
    else:  # a table without token_id (one-api's layout): the key's owner and its exact name
        who = "user_id = %(user_id)s AND token_name = %(token_name)s"
        params.update(user_id=scope.user_id, token_name=scope.token_name or "")
    # created_at first: it is the table's sort key, so only the range's granules are read.
    where = f"created_at >= %(start)s AND created_at < %(end)s AND {who} AND type IN (%(consume)s, %(refund)s)"
    return where, params


def clickhouse_daily(scope: Scope, start: date, end: date, found: frozenset[str]) -> tuple[str, dict[str, Any]]:
    """The one ClickHouse query behind ``daily_usage`` (``found``: the table's columns, ``CLICKHOUSE_COLUMNS``)."""
    where, params = _clickhouse_where(scope, start, end, found)
    statement = (
        f"SELECT intDiv(created_at, {SECONDS_PER_DAY}) AS day, model_name, {_NET} AS net, {_REQUESTS} AS requests "
        f"FROM {logs.name} WHERE {where} GROUP BY day, model_name"
    )
    return statement, params


def clickhouse_net(scope: Scope, start: date, end: date, found: frozenset[str]) -> tuple[str, dict[str, Any]]:
    """The one ClickHouse query behind ``net_spend``."""
    where, params = _clickhouse_where(scope, start, end, found)
    return f"SELECT {_NET} FROM {logs.name} WHERE {where}", params
