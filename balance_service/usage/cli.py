"""``flask --app wsgi rollup-usage``: sum new log rows into the usage roll-up, once (cron) or every N seconds."""

from __future__ import annotations

import logging

import click
from flask.cli import with_appcontext
from sqlalchemy.exc import SQLAlchemyError

from ..config import is_clickhouse_url, settings
from ..extensions import db
from ..gateway.logs import SqlLogSource
from ..migrations import NotMigrated, require_current
from ..periodic import loop_option, run_every
from .rollup import BATCH_IDS, MAX_BATCHES, SETTLE_SECONDS, LogsWentBack, rebuild, roll_up
from .source import sql_log_source

log = logging.getLogger(__name__)


def _once(raw: SqlLogSource, batch_ids: int, max_batches: int, settle: float) -> str:
    require_current(db.engine)
    return str(roll_up(db.engine, raw, batch_ids=batch_ids, max_batches=max_batches, settle=settle))


@click.command("rollup-usage")
@loop_option("rolling up")
@click.option(
    "--batch-size",
    "batch_ids",
    type=click.IntRange(min=1),
    default=BATCH_IDS,
    show_default=True,
    help="Log ids summed per transaction.",
)
@click.option(
    "--max-batches",
    type=click.IntRange(min=1),
    default=MAX_BATCHES,
    show_default=True,
    help="Batches per run at most; the next run goes on.",
)
@click.option(
    "--settle",
    type=click.FloatRange(min=0),
    default=SETTLE_SECONDS,
    show_default=True,
    help="Seconds a log id must have been seen before it is rolled up (gateway writes still committing).",
)
@click.option("--rebuild", "start_over", is_flag=True, help="Forget the roll-up and start again from the first log id.")
@with_appcontext
def rollup_usage_command(
    interval: int | None, batch_ids: int, max_batches: int, settle: float, start_over: bool
) -> None:
    """Sum the gateway's new log rows into the service's usage roll-up (read-only on the gateway's tables).

    Each run adds the rows written since the last one to their days, late
    rows and refunds of closed days included; usage requests add the few rows
    after that from the logs. Safe to run from cron and by hand at once.
    """
    if is_clickhouse_url(settings().log_database_url or ""):
        click.echo("the logs are in ClickHouse: usage is summed there directly, there is nothing to roll up")
        return
    raw = sql_log_source()
    try:
        if not raw.has_logs():
            click.echo("no logs table in the log database: nothing to roll up")
            return
        if start_over:
            require_current(db.engine)
            rebuild(db.engine, raw)
            click.echo("roll-up emptied; usage is read from the logs alone until the next run")
        if interval is None:
            click.echo(_once(raw, batch_ids, max_batches, settle))
            return
    except (NotMigrated, LogsWentBack) as e:
        raise click.ClickException(str(e)) from None
    except SQLAlchemyError as e:
        raise click.ClickException(f"database error: {getattr(e, 'orig', None) or e}") from None
    run_every(
        interval, lambda: _once(raw, batch_ids, max_batches, settle), "rollup-usage", logged=(NotMigrated, LogsWentBack)
    )
