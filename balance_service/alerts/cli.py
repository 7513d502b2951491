"""``flask --app wsgi check-alerts``: run once (cron) or every N seconds (``--loop``)."""

from __future__ import annotations

import logging
from typing import Any

import click

from ..migrations import NotMigrated
from ..periodic import loop_option, run_every
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
@loop_option("checking")
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
    # NotMigrated is logged once (migrations.require_current); checks resume once init-db has run.
    run_every(interval, lambda: str(check_alerts(delivery=delivery)), "check-alerts", quiet=(NotMigrated,))
