"""Where usage figures come from: the gateway's ``logs`` table, behind one small interface.

Everything the service knows about spend over time goes through a ``LogSource``:
``daily_usage`` (net quota and requests per UTC day and model) and ``net_spend``
(one total). ``SqlLogSource`` reads the gateway's ``logs`` table on the main
database or on ``LOG_DATABASE_URL``, behind ``RolledUpLogSource`` (usage/rollup.py),
which adds the sums already rolled up to the rows that came after them;
``ClickHouseLogSource`` (usage/clickhouse.py) reads it in ClickHouse when
``LOG_DATABASE_URL`` is a ``clickhouse://`` URL.
Another store (new-api's hourly ``quota_data``) only has to answer the same
three questions, and ``log_source()`` is the one place that picks the
implementation.

Nothing here writes; the ``logs`` table and its queries are in ``gateway/logs.py``,
the roll-up (written by ``flask rollup-usage`` only) in ``usage/rollup.py``.
"""

from __future__ import annotations

from datetime import date
from typing import Protocol

from flask import current_app
from sqlalchemy import Engine

from ..config import DB_CONNECT_TIMEOUT, is_clickhouse_url, settings
from ..extensions import db
from ..gateway.logs import Scope, SqlLogSource, UsageRow
from .rollup import RolledUpLogSource

#: The Flask-SQLAlchemy bind that ``LOG_DATABASE_URL`` configures (config.finalize).
LOG_BIND = "logs"


class LogSource(Protocol):
    """What the usage endpoints need from a log store. Days are UTC; ``start`` inclusive, ``end`` exclusive."""

    def has_logs(self) -> bool:
        """Whether the store holds the gateway's request logs at all (a ``logs`` table)."""

    def daily_usage(self, scope: Scope, start: date, end: date) -> list[UsageRow]:
        """Rows with any consume or refund in the range, one per (day, model), in no particular order."""

    def net_spend(self, scope: Scope, start: date, end: date) -> int:
        """Σ consume quota − Σ refund quota in the range, in quota units (0 when nothing happened)."""


def log_engine() -> Engine:
    """The engine of ``LOG_DATABASE_URL`` when set, else the main database's (one pool, not two)."""
    return db.engines.get(LOG_BIND) or db.engine


def sql_log_source() -> SqlLogSource:
    """The gateway's SQL ``logs`` table, its sums with the log queries' own statement timeout."""
    return SqlLogSource(log_engine(), settings().log_statement_timeout_ms)


#: Where an app keeps its ClickHouse log source (one connection pool per app and process).
CLICKHOUSE_EXTENSION = "balance_service.clickhouse_logs"


def log_source() -> LogSource:
    """The log store of the current app: the one place to choose another implementation."""
    url = settings().log_database_url or ""
    if not is_clickhouse_url(url):
        return RolledUpLogSource(sql_log_source(), db.engine)
    source = current_app.extensions.get(CLICKHOUSE_EXTENSION)
    if source is None:
        from .clickhouse import ClickHouseLogSource, ClickHousePool, client_options, given_in_url  # when used

        host, options = client_options(url, DB_CONNECT_TIMEOUT, settings().db_statement_timeout_ms)
        pool = ClickHousePool(host, options, given_in_url(url))
        source = ClickHouseLogSource(pool, settings().log_statement_timeout_ms)
        source = current_app.extensions.setdefault(CLICKHOUSE_EXTENSION, source)
    return source
