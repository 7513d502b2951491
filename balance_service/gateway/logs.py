"""The gateway's ``logs`` table as the usage figures read it: whose rows, which days, net spend.

``SqlLogSource`` queries it in a SQL database (the main one or ``LOG_DATABASE_URL``);
the ``clickhouse_*`` functions write the same queries in ClickHouse's SQL for
``usage/clickhouse.py``, which only runs them. Both answer the questions of
``usage.source.LogSource``. Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Engine, Integer, Select, and_, case, func, literal_column, select

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
    return [UsageRow(EPOCH + timedelta(days=int(d)), m or "", int(net or 0), int(n or 0)) for d, m, net, n in rows]


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
        return columns(self.engine, logs.name)

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
            return usage_rows(connection.execute(self.daily_statement(scope, start, end)).all())

    def net_spend(self, scope: Scope, start: date, end: date) -> int:
        stmt = select(self._net()).where(self._where(scope, start, end))
        with self.engine.connect() as connection:
            return int(connection.execute(stmt).scalar() or 0)


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
