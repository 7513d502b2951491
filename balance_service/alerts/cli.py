"""``flask --app wsgi check-alerts``: run once (cron) or every N seconds (``--loop``)."""

from __future__ import annotations

import logging
import time

import click
from sqlalchemy.exc import SQLAlchemyError

from ..extensions import db
from ..migrations import NotMigrated
from .checker import check_alerts

log = logging.getLogger(__name__)


@click.command("check-alerts")
@click.option(
    "--loop",
    "interval",
    type=click.IntRange(min=1),
    default=None,
    metavar="SECONDS",
    help="Keep running, checking every SECONDS, instead of checking once.",
)
def check_alerts_command(interval: int | None) -> None:
    """Send the balance-alert webhooks that are due.

    Run once, it exits 1 when a notification could not be delivered (cron then
    mails the output); the alert stays due and the next run retries it.
    """
    if interval is None:
        try:
            summary = check_alerts()
        except NotMigrated as e:
            raise click.ClickException(str(e)) from None
        click.echo(str(summary))
        if summary.failed:
            raise click.exceptions.Exit(1)
        return
    try:
        while True:
            started = time.monotonic()
            try:
                click.echo(str(check_alerts()))
            except SQLAlchemyError as e:
                # A database hiccup must not end the loop; the next pass tries again.
                db.session.rollback()
                log.error("check-alerts: database error: %s", type(e).__name__)
            except NotMigrated:
                pass  # logged once (migrations.require_current); checks resume once init-db has run
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    except KeyboardInterrupt:
        click.echo("stopped")
