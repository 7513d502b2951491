"""``flask --app wsgi doctor``: what the gateway database holds, and the index the usage queries want.

Read-only: it inspects tables, columns and indexes, reads a few rows of
``options`` and prints what it found. The ``CREATE INDEX`` it recommends is
printed for the operator to run (the service never writes gateway tables).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import click
from flask.cli import with_appcontext
from sqlalchemy import Engine, inspect
from sqlalchemy.exc import SQLAlchemyError

from ..config import is_clickhouse_url, settings
from ..extensions import db
from ..usage.source import log_engine, log_source
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


@dataclass(frozen=True)
class UsageIndex:
    """An index the usage queries of one scope want: equality on ``column``, a range on ``created_at``."""

    scope: str
    column: str

    @property
    def name(self) -> str:
        return f"idx_logs_{self.column}_created_at"

    def statement(self, dialect: str) -> str:
        """The exact statement for the backend: online where the backend can build an index online."""
        columns = f"({self.column}, created_at)"
        if dialect == "postgresql":
            return f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {self.name} ON logs {columns};"
        if dialect in ("mysql", "mariadb"):
            return f"ALTER TABLE logs ADD INDEX {self.name} {columns}, ALGORITHM=INPLACE, LOCK=NONE;"
        return f"CREATE INDEX IF NOT EXISTS {self.name} ON logs {columns};"


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _indexes(engine: Engine, table: str) -> list[tuple[str, tuple[str, ...]]]:
    """(name, columns) of every index on the table, the primary key included."""
    inspector = inspect(engine)
    found = [(i["name"] or "?", tuple(c or "?" for c in i["column_names"])) for i in inspector.get_indexes(table)]
    primary = inspector.get_pk_constraint(table).get("constrained_columns") or []
    if primary:
        found.insert(0, ("PRIMARY KEY", tuple(primary)))
    return found


def _serving(indexes: Iterable[tuple[str, tuple[str, ...]]], column: str) -> tuple[str | None, str | None]:
    """The index that serves ``column = ? AND created_at range`` fully, and one that serves only the equality."""
    full = partial = None
    for name, columns in indexes:
        if columns[:2] == (column, "created_at"):
            full = full or name
        elif columns[:1] == (column,):
            partial = partial or name
    return full, partial


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
    out += [f"    {name} ({', '.join(cols)})" for name, cols in indexes] or ["    (none)"]

    wanted = [UsageIndex("account", "user_id")]
    if new_api:
        wanted.append(UsageIndex("key", "token_id"))
    else:
        out.append("  key scope (one-api): user_id and token_name; served by the account's index")
    out += ["", "usage queries:"]
    recommend: list[UsageIndex] = []
    for want in wanted:
        full, partial = _serving(indexes, want.column)
        if full:
            out.append(f"  {want.scope}: {want.column} = ? AND created_at range -> served by {full}")
            continue
        recommend.append(want)
        how = (
            f"only {want.column} is indexed ({partial}): every row of the {want.scope} is read"
            if partial
            else (f"no index on {want.column}: the whole table is scanned")
        )
        out.append(f"  {want.scope}: {want.column} = ? AND created_at range -> {how}")
    out += ["", f"recommended ({logs_engine.dialect.name}):"]
    if recommend:
        out += [f"  {want.statement(logs_engine.dialect.name)}" for want in recommend]
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
