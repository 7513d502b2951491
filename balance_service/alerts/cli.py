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


#: check-alerts' delivery options: flag, DeliveryOptions field, accepted values, help.
_DELIVERY_OPTIONS = (
    ("--timeout", "timeout", click.FloatRange(0, 60, min_open=True), "Seconds one attempt may take."),
    ("--attempts", "attempts", click.IntRange(1, 10), "Attempts per notification."),
    ("--retry-backoff", "backoff", click.FloatRange(0, 60), "Seconds before the second attempt; doubled after."),
    ("--workers", "workers", click.IntRange(1, 64), "Deliveries at once."),
    ("--deadline", "deadline", click.FloatRange(0, 600, min_open=True), "Seconds one alert's delivery may take."),
    ("--max-backoff", "max_backoff", click.IntRange(60, 7 * 86400), "Longest pause of a failing alert, in seconds."),
)


def _with_delivery_options(command: Any) -> Any:
    defaults = DeliveryOptions()
    for flag, name, kind, text in reversed(_DELIVERY_OPTIONS):
        option = click.option(flag, name, type=kind, default=getattr(defaults, name), show_default=True, help=text)
        command = option(command)
    return command


@click.command("check-alerts")
@click.option(
    "--loop",
    "interval",
    type=click.IntRange(min=1),
    default=None,
    metavar="SECONDS",
    help="Keep running, checking every SECONDS, instead of checking once.",
)
@_with_delivery_options
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
