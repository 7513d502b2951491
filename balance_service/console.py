"""``balance-service``: the operator commands of an installed package, and ``serve`` to run it.

An install from a wheel has no ``wsgi.py`` for ``flask --app`` to find, so this console script is
the Flask CLI bound to :func:`balance_service.create_app`: ``balance-service init-db`` is
``flask --app wsgi init-db`` in a checkout. Settings come from the environment, as for the service.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from flask.cli import FlaskGroup

from . import create_app
from .cli import COMMAND_META
from .version import __version__

#: The packaged gunicorn settings (given to gunicorn as a file, as the checkout's gunicorn.conf.py runs it)
#: and the WSGI app.
GUNICORN_CONFIG = str(Path(__file__).with_name("gunicorn_conf.py"))
WSGI_APP = "balance_service.wsgi:app"


# No .env file is read: the service's settings come from the environment only. Flask's
# ``run`` and ``shell`` are left out: ``serve`` is the way to run the service.
@click.group(cls=FlaskGroup, create_app=create_app, add_default_commands=False, load_dotenv=False)
@click.pass_context
def main(ctx: click.Context) -> None:
    """Operator commands of balance-service (settings from the environment, see the README)."""
    ctx.meta[COMMAND_META] = "balance-service"  # the commands' hints name this script, not a checkout's flask


# FlaskGroup adds --app, --env-file, --debug and a --version that prints Flask's versions; this script has one
# app, no .env and no debug server, and its --version is the service's.
main.params = [param for param in main.params if param.name not in ("app", "env_file", "debug", "version")]
click.version_option(__version__, "--version", prog_name="balance-service", message="%(prog)s %(version)s")(main)


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("gunicorn_args", nargs=-1, type=click.UNPROCESSED)
def serve(gunicorn_args: tuple[str, ...]) -> None:
    """Run the service under gunicorn with the packaged settings; extra arguments go to gunicorn."""
    command = [sys.executable, "-m", "gunicorn", "-c", GUNICORN_CONFIG, *gunicorn_args, WSGI_APP]
    os.execv(sys.executable, command)
