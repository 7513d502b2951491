"""``flask --app wsgi doctor``: what the gateway database holds, and the indexes the usage queries want.

Read-only: it inspects tables, columns, indexes and (PostgreSQL) extended
statistics, reads a few rows of ``options`` and the usage roll-up's state, and
prints what it found. The ``CREATE INDEX`` / ``CREATE STATISTICS`` it
recommends are printed for the operator to run (the service never writes
gateway tables).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import click
from flask.cli import with_appcontext
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import SQLAlchemyError

from ..config import is_clickhouse_url, settings
from ..extensions import db
from ..usage.rollup import RollupState
from ..usage.source import log_engine, log_source
from .logs import SqlLogSource
from .options import (
    DISPLAY_IN_CURRENCY,
    DISPLAY_TOKEN_STAT,
    DISPLAY_TYPE,
    LOG_CONSUME,
    QUOTA_PER_UNIT,
    parse,
    read_rows,
)

if TYPE_CHECKING:  # the ClickHouse driver is imported only where LOG_DATABASE_URL asks for it
    from ..usage.clickhouse import ClickHouseLogSource

#: The gateway options that change what the service should show (gateway-schema.md), with their defaults.
OPTIONS = {
    QUOTA_PER_UNIT: "500000",
    DISPLAY_TYPE: f"USD (new-api); one-api: see {DISPLAY_IN_CURRENCY}",
    DISPLAY_IN_CURRENCY: "true",
    DISPLAY_TOKEN_STAT: "true",
    LOG_CONSUME: "true",
}

#: Columns of ``logs`` the usage queries read; ``token_id`` only exists on new-api.
LOG_COLUMNS = ("user_id", "created_at", "type", "quota", "model_name", "token_name")


#: Columns the usage queries read besides the equality and the range: in a covering index, no table row is read.
COVERED = ("type", "quota", "model_name")
#: Name of the extended statistics ``doctor`` recommends on PostgreSQL (14+).
STATISTICS_NAME = "logs_usage_day_model"


@dataclass(frozen=True)
class UsageIndex:
    """A covering index for the usage queries of one scope: equality on ``column``, a range on ``created_at``.

    ``covered`` are the other columns the queries read (``COVERED``; one-api's
    key scope also reads ``token_name``): held in the index, the rows of a
    month are summed from the index alone (an index-only scan) instead of
    fetching each row from the table.
    """

    scope: str
    column: str
    covered: tuple[str, ...] = COVERED

    @property
    def name(self) -> str:
        return f"idx_logs_{self.column}_created_at_usage"

    def statement(self, dialect: str) -> str:
        """The exact statement for the backend: online where the backend can build an index online."""
        covered = ", ".join(self.covered)
        if dialect == "postgresql":
            return (
                f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {self.name} ON logs ({self.column}, created_at) "
                f"INCLUDE ({covered});"
            )
        columns = f"({self.column}, created_at, {covered})"
        if dialect in ("mysql", "mariadb"):
            return f"ALTER TABLE logs ADD INDEX {self.name} {columns}, ALGORITHM=INPLACE, LOCK=NONE;"
        return f"CREATE INDEX IF NOT EXISTS {self.name} ON logs {columns};"


#: What PostgreSQL's planner needs to know how many (day, model) groups a range has (expressions: PostgreSQL 14+).
STATISTICS = (
    f"CREATE STATISTICS IF NOT EXISTS {STATISTICS_NAME} (ndistinct) ON (created_at / 86400), model_name FROM logs;",
    "ANALYZE logs;",
)


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


IndexInfo = tuple[str, tuple[str, ...], tuple[str, ...]]


def _indexes(engine: Engine, table: str) -> list[IndexInfo]:
    """(name, key columns, included columns) of every index on the table, the primary key included."""
    inspector = inspect(engine)
    found = [
        (
            i["name"] or "?",
            tuple(c or "?" for c in i["column_names"]),
            tuple(i.get("dialect_options", {}).get("postgresql_include") or ()),
        )
        for i in inspector.get_indexes(table)
    ]
    primary = inspector.get_pk_constraint(table).get("constrained_columns") or []
    if primary:
        found.insert(0, ("PRIMARY KEY", tuple(primary), ()))
    return found


def _serving(indexes: Iterable[IndexInfo], want: UsageIndex) -> tuple[str | None, str | None, str | None]:
    """Indexes for ``column = ? AND created_at range``: one holding every column read, one for the range, one
    for the equality only."""
    covering = ranged = partial = None
    for name, columns, included in indexes:
        if columns[:2] == (want.column, "created_at"):
            if set(want.covered) <= set(columns[2:]) | set(included):
                covering = covering or name
            ranged = ranged or name
        elif columns[:1] == (want.column,):
            partial = partial or name
    return covering, ranged, partial


def _has_day_model_statistics(engine: Engine) -> bool:
    """Whether PostgreSQL has ndistinct statistics on (created_at / 86400, model_name) of ``logs``."""
    query = text(
        "SELECT pg_get_statisticsobjdef(oid) FROM pg_statistic_ext "
        "WHERE stxrelid = to_regclass('logs') AND 'd' = ANY(stxkind)"
    )
    with engine.connect() as connection:
        definitions = connection.execute(query).scalars().all()
    return any("created_at / 86400" in d and "model_name" in d for d in definitions)


def _rollup_report(main: Engine, logs_engine: Engine) -> list[str]:
    """How far the usage roll-up (``flask rollup-usage``) has got, in the main database."""
    out = ["", "usage roll-up (the service's usage_rollup, in the main database):"]
    if not inspect(main).has_table(RollupState.__tablename__):
        return [*out, "  not set up: run `flask --app wsgi init-db`; until then usage is read from the logs alone"]
    with main.connect() as connection:
        watermark = connection.execute(select(RollupState.watermark)).scalar() or 0
    last = SqlLogSource(logs_engine, settings().log_statement_timeout_ms).last_id()
    if not watermark:
        return [
            *out,
            f"  never run: each usage request sums its range from the logs ({last} log ids);",
            "  run `flask --app wsgi rollup-usage` every minute (cron), next to check-alerts",
        ]
    return [*out, f"  at log id {watermark} of {last}: requests read {max(last - watermark, 0)} log ids from the logs"]


def clickhouse_report(source: ClickHouseLogSource, where: str) -> list[str]:
    """The log section for logs in ClickHouse: the table and its layout; no index to add there."""
    out = ["", f"log database: {where} (ClickHouse)"]
    columns = source.columns()
    if columns is None:
        out.append("  logs     MISSING: ranged billing usage falls back to lifetime, GET /v1/usage answers 409")
        return out
    flavour = "new-api layout (with token_id)" if "token_id" in columns else "no token_id: keys matched by name"
    out.append(f"  logs     present, {flavour}")
    missing = [c for c in LOG_COLUMNS if c not in columns]
    if missing:
        out.append(f"  columns  MISSING {', '.join(missing)}: the usage queries cannot run on this table")
    out += [
        "",
        "usage queries:",
        "  one aggregate per figure (sumIf/countIf by UTC day and model); the created_at range selects the",
        "  granules to read (new-api sorts the table by created_at), the rest is a scan of that range",
        "",
        "recommended (ClickHouse):",
        "  nothing: the table's sort key serves the usage queries",
    ]
    return out


def inspect_gateway(
    main: Engine, logs_engine: Engine, separate_logs: bool, clickhouse: tuple[ClickHouseLogSource, str] | None = None
) -> list[str]:
    """The report, line by line; ``clickhouse``: the log source and its URL when the logs are in ClickHouse."""
    out = ["balance-service doctor (read-only: nothing is written)", ""]
    tables = set(inspect(main).get_table_names())
    out.append(f"main database: {_url(main)} ({main.dialect.name})")
    for table in ("users", "tokens", "options"):
        out.append(f"  {table:8} {'present' if table in tables else 'MISSING'}")

    out += ["", "gateway options:"]
    found = read_rows(main) if "options" in tables else {}
    if "options" not in tables:
        out.append("  (no options table: the gateway's defaults apply)")
    for key, default in OPTIONS.items():
        value = found.get(key)
        out.append(f"  {key} = {value}" if value is not None else f"  {key}: not set (default {default})")
    parsed = parse(found)
    out.append(
        "  consume logging: on"
        if parsed.log_consume
        else "  consume logging: OFF (the gateway writes no consume rows: date-ranged billing usage falls back to "
        "lifetime, GET /v1/usage answers 409)"
    )
    out.append(f"  billing endpoints report: the {'key' if parsed.display_token_stat else 'account'}")

    if clickhouse is not None:
        return out + clickhouse_report(*clickhouse)
    where = f"{_url(logs_engine)} (LOG_DATABASE_URL)" if separate_logs else "the main database"
    out += ["", f"log database: {where} ({logs_engine.dialect.name})"]
    log_inspector = inspect(logs_engine)
    if not log_inspector.has_table("logs"):
        out.append("  logs     MISSING: ranged billing usage falls back to lifetime, GET /v1/usage answers 409")
        return out
    columns = {c["name"] for c in log_inspector.get_columns("logs")}
    new_api = "token_id" in columns
    flavour = "new-api layout (with token_id)" if new_api else "one-api layout (no token_id)"
    out.append(f"  logs     present, {flavour}")
    missing = [c for c in LOG_COLUMNS if c not in columns]
    if missing:
        out.append(f"  columns  MISSING {', '.join(missing)}: the usage queries cannot run on this table")
    indexes = _indexes(logs_engine, "logs")
    out.append("  indexes:")
    out += [
        f"    {name} ({', '.join(cols)})" + (f" INCLUDE ({', '.join(included)})" if included else "")
        for name, cols, included in indexes
    ] or ["    (none)"]

    if new_api:
        wanted = [UsageIndex("account", "user_id"), UsageIndex("key", "token_id")]
    else:  # the key scope filters on token_name too: the account's index holds it as well
        wanted = [UsageIndex("account", "user_id", (*COVERED, "token_name"))]
        out.append("  key scope (one-api): user_id and token_name; served by the account's index")
    out += ["", "usage queries:"]
    dialect = logs_engine.dialect.name
    recommend: list[str] = []
    for want in wanted:
        covering, ranged, partial = _serving(indexes, want)
        where = f"  {want.scope}: {want.column} = ? AND created_at range ->"
        if covering:
            out.append(f"{where} served by {covering}, from the index alone")
            continue
        recommend.append(want.statement(dialect))
        if ranged:
            how = (
                f"the range is found with {ranged}, then each row is read from the table; an index that also "
                f"holds {', '.join(want.covered)} answers from the index alone ({ranged} can go once it exists)"
            )
        elif partial:
            how = f"only {want.column} is indexed ({partial}): every row of the {want.scope} is read"
        else:
            how = f"no index on {want.column}: the whole table is scanned"
        out.append(f"{where} {how}")
    if dialect == "postgresql":
        version = logs_engine.dialect.server_version_info or (0,)
        if version < (14,):
            out.append("  grouping by day and model: statistics on expressions need PostgreSQL 14 (this is older)")
        elif _has_day_model_statistics(logs_engine):
            out.append("  grouping by day and model: estimated from the extended statistics on them")
        else:
            out.append(
                "  grouping by day and model: without extended statistics PostgreSQL expects as many groups as"
                " rows and may sort them on disk"
            )
            recommend += STATISTICS
    out += _rollup_report(main, logs_engine)
    out += ["", f"recommended ({dialect}):"]
    if recommend:
        out += [f"  {statement}" for statement in recommend]
    else:
        out.append("  nothing: the usage queries have the indexes they need")
    return out


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@click.command("doctor")
@with_appcontext
def doctor_command() -> None:
    """Inspect the gateway database (read-only) and print the indexes the usage queries need."""
    log_url = settings().log_database_url or ""
    clickhouse = None
    if is_clickhouse_url(log_url):
        clickhouse = (log_source(), f"{_hide_password(log_url)} (LOG_DATABASE_URL)")  # a ClickHouseLogSource
    try:
        lines: Sequence[str] = inspect_gateway(db.engine, log_engine(), bool(log_url), clickhouse)
    except SQLAlchemyError as e:
        raise click.ClickException(f"database error: {getattr(e, 'orig', None) or e}") from None
    click.echo("\n".join(lines))
