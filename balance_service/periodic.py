"""Operator commands that run once (cron) or keep running (``--loop SECONDS``): one option, one loop."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import click
from sqlalchemy.exc import SQLAlchemyError

from .extensions import db

log = logging.getLogger(__name__)

#: The loop's clock and its wait between passes; tests replace them to run passes without waiting.
clock: Callable[[], float] = time.monotonic
sleep: Callable[[float], None] = time.sleep


def loop_option(doing: str) -> Callable:
    """The ``--loop SECONDS`` option (``interval``: None to run once), its help saying what each pass does."""
    return click.option(
        "--loop",
        "interval",
        type=click.IntRange(min=1),
        default=None,
        metavar="SECONDS",
        help=f"Keep running, {doing} every SECONDS, instead of once.",
    )


def run_every(
    interval: int,
    one_pass: Callable[[], str],
    name: str,
    logged: tuple[type[Exception], ...] = (),
    quiet: tuple[type[Exception], ...] = (),
) -> None:
    """Echo ``one_pass()`` every ``interval`` seconds until Ctrl-C; a failed pass does not end the loop.

    A database error (a hiccup, a restart) and the exceptions in ``logged`` are
    logged; those in ``quiet`` are passed over (their cause is logged elsewhere).
    The next pass tries again.
    """
    try:
        while True:
            started = clock()
            try:
                click.echo(one_pass())
            except SQLAlchemyError as e:
                db.session.rollback()
                log.error("%s: database error: %s", name, type(e).__name__)
            except logged as e:
                log.error("%s: %s", name, e)
            except quiet:
                pass
            sleep(max(0.0, interval - (clock() - started)))
    except KeyboardInterrupt:
        click.echo("stopped")
