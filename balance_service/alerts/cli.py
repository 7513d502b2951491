"""``flask --app wsgi check-alerts``: run once (cron) or every N seconds (``--loop``)."""

from __future__ import annotations

import logging
import time
from typing import Any

import click
from sqlalchemy.exc import SQLAlchemyError

from ..extensions import db
from ..migrations import NotMigrated
from .checker import DeliveryOptions, check_alerts

log = logging.getLogger(__name__)


_DEFAULTS = DeliveryOptions()


@click.command("check-alerts")
@click.option(
    "--loop",
    "interval",
    type=click.IntRange(min=1),
    default=None,
    metavar="SECONDS",
    help="Keep running, checking every SECONDS, instead of checking once.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0, 60, min_open=True),
    default=_DEFAULTS.timeout,
    show_default=True,
    help="Seconds one attempt may take.",
)
@click.option(
    "--attempts",
    type=click.IntRange(1, 10),
    default=_DEFAULTS.attempts,
    show_default=True,
    help="Attempts per notification.",
)
@click.option(
    "--retry-backoff",
    "backoff",
    type=click.FloatRange(0, 60),
    default=_DEFAULTS.backoff,
    show_default=True,
    help="Seconds before the second attempt; doubled before each further one.",
)
@click.option(
    "--workers", type=click.IntRange(1, 64), default=_DEFAULTS.workers, show_default=True, help="Deliveries at once."
)
@click.option(
    "--deadline",
    type=click.FloatRange(0, 600, min_open=True),
    default=_DEFAULTS.deadline,
    show_default=True,
    help="Seconds one alert's delivery may take in all.",
)
@click.option(
    "--max-backoff",
    type=click.IntRange(60, 7 * 86400),
    default=_DEFAULTS.max_backoff,
    show_default=True,
    help="Longest pause, in seconds, of an alert whose deliveries keep failing.",
)
def check_alerts_command(interval: int | None, **options: Any) -> None:
    """Send the balance alerts that are due: webhooks, chat and push messages, e-mails.

    Run once, it exits 1 when a notification could not be delivered (cron then
    mails the output); the alert stays due and the next run retries it.
    """
    delivery = DeliveryOptions(**options)
    if interval is None:
        try:
            summary = check_alerts(delivery=delivery)
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
                click.echo(str(check_alerts(delivery=delivery)))
            except SQLAlchemyError as e:
                # A database hiccup must not end the loop; the next pass tries again.
                db.session.rollback()
                log.error("check-alerts: database error: %s", type(e).__name__)
            except NotMigrated:
                pass  # logged once (migrations.require_current); checks resume once init-db has run
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    except KeyboardInterrupt:
        click.echo("stopped")
