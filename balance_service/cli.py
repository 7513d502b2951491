"""Operator commands: ``flask --app wsgi <command>``."""

from __future__ import annotations

import functools

import click
from flask import Flask
from flask.cli import with_appcontext
from sqlalchemy.exc import SQLAlchemyError

from .alerts.cli import check_alerts_command
from .config import settings
from .extensions import db
from .gateway import operations as ops
from .gateway.demo import DAYS, DemoKey, seed_usage
from .gateway.doctor import doctor_command
from .gateway.money import AmountTooLarge, NotANumber, NotWhole
from .gateway.options import gateway_options
from .migrations import MigrationBusy, init_database
from .usage.cli import rollup_usage_command


def _operator_command(func):
    """Run inside the app context; show an OperationError as a one-line error (exit 1), not a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except ops.OperationError as e:
            raise click.ClickException(str(e)) from None
        except SQLAlchemyError as e:
            # Parameters are hidden on the engine: the message names the failure, never a key.
            raise click.ClickException(f"database error: {getattr(e, 'orig', None) or e}") from None

    return with_appcontext(wrapper)


def _to_quota(amount: str, unit: str) -> int:
    """AMOUNT in quota units, or in USD/CNY when --unit says so."""
    money = gateway_options().currency("tokens" if unit == "quota" else unit)  # quota: raw units, whole numbers
    try:
        return money.parse(amount)
    except NotANumber:
        raise click.BadParameter(f"{amount!r} is not a number", param_hint="AMOUNT") from None
    except NotWhole:
        raise click.BadParameter("quota units are whole numbers", param_hint="AMOUNT") from None
    except AmountTooLarge:
        raise click.BadParameter(f"{amount!r} is more than a quota column can hold", param_hint="AMOUNT") from None


@click.command("init-db")
@_operator_command
def init_db() -> None:
    """Create users and tokens if absent (standalone installs); migrate balance_alerts to the current revision.

    The service's own table goes through Alembic (balance_service/migrations):
    created, or brought up to date from an earlier version's, never a gateway table.
    """
    try:
        before, after = init_database(db.engine)
    except MigrationBusy as e:
        raise click.ClickException(str(e)) from None
    where = db.engine.url.render_as_string(hide_password=True)
    moved = f"migrated from {before or 'nothing'} to {after}" if before != after else f"already at {after}"
    click.echo(f"tables ready in {where}; balance_alerts {moved}")


@click.command("create-user")
@click.argument("name")
@click.option("--quota", type=click.IntRange(min=0), default=0, show_default=True, help="Starting quota units.")
@click.option("--role", type=click.IntRange(min=1), default=1, show_default=True, help="1 common, 10 admin, 100 root.")
@_operator_command
def create_user(name: str, quota: int, role: int) -> None:
    """Create a user account NAME."""
    user = ops.create_user(name, quota=quota, role=role)
    click.echo(f"created user {user.username} (id {user.id}) with quota {user.quota}")


@click.command("create-token")
@click.argument("user")
@click.option("--quota", type=click.IntRange(min=0), default=0, show_default=True, help="Quota units on the key.")
@click.option("--unlimited", is_flag=True, help="The key has no quota limit.")
@click.option("--expires", default=None, help="never (default), 30d, 12h, 2027-01-31 or Unix seconds.")
@click.option("--name", default="", help="A label for the key.")
@_operator_command
def create_token(user: str, quota: int, unlimited: bool, expires: str | None, name: str) -> None:
    """Create an API key for USER (username or id) and print it once."""
    if unlimited and quota:
        raise click.UsageError("--quota and --unlimited exclude each other")
    owner = ops.find_user(user)
    token, key = ops.create_token(owner, name=name, quota=quota, unlimited=unlimited, expires=ops.parse_expiry(expires))
    click.echo(f"created token {token.id} for {owner.username}; the key is shown only this once:")
    click.echo(key)


@click.command("top-up")
@click.argument("arguments", nargs=-1, required=True, metavar="[USER] AMOUNT")
@click.option("--token", "key", default=None, help="Top up this key instead of a user.")
@click.option(
    "--unit",
    type=click.Choice(["quota", "USD", "CNY"]),
    default="quota",
    show_default=True,
    help="Unit of AMOUNT.",
)
@_operator_command
def top_up(arguments: tuple[str, ...], key: str | None, unit: str) -> None:
    """Add AMOUNT to USER's quota (name or id), or to a key's with --token KEY; one atomic UPDATE."""
    expected = 1 if key is not None else 2
    if len(arguments) != expected:
        raise click.UsageError("give USER AMOUNT, or --token KEY AMOUNT")
    quota = _to_quota(arguments[-1], unit)
    if key is not None:
        click.echo(f"key now has {ops.top_up_token(key, quota)} quota")
    else:
        click.echo(f"user {arguments[0]} now has {ops.top_up_user(arguments[0], quota)} quota")


@click.command("disable-token")
@click.argument("key")
@_operator_command
def disable_token(key: str) -> None:
    """Disable an API key; balance requests with it are refused from now on."""
    ops.disable_token(key)
    click.echo("key disabled")


#: Where ``balance-service`` (console.py) says that it is the one running: hints then name it.
COMMAND_META = "balance_service.command"
#: The command a hint names in a checkout, run from its top folder as scripts/run does.
CHECKOUT_COMMAND = ".venv/bin/flask --app wsgi"


def operator_command() -> str:
    """How the user runs these commands where they are: ``balance-service`` from a wheel, else the checkout's flask."""
    return click.get_current_context().meta.get(COMMAND_META, CHECKOUT_COMMAND)


@click.command("demo")
@click.option("--host", default=None, help="Where the service will listen (default: the BIND setting).")
@_operator_command
def demo(host: str | None) -> None:
    """Create the tables (as init-db does) and, on an empty database, a demo user with a key and 30 days of usage.

    Prints the key and a curl line for the address the service will be served on.
    """
    init_database(db.engine)
    address = host or settings().bind
    if ops.count_users():
        click.echo(f"The database already has users; create a key with: {operator_command()} create-token USER")
        click.echo(f"The service will be on http://{address}")
        return
    user = ops.create_user("demo", quota=5_000_000)
    token, key = ops.create_token(user, name="demo", quota=1_000_000)
    other, _ = ops.create_token(user, name="demo-batch", unlimited=True)
    if settings().log_database_url:
        history = "none made: LOG_DATABASE_URL is set, and the logs live there"
    else:
        made = seed_usage(db.engine, user.id, (DemoKey(token.id, token.name), DemoKey(other.id, other.name)))
        history = f"{made} requests over the last {DAYS} days in a new logs table" if made else "logs table kept"
    click.echo("Created demo user 'demo' and a key for it (shown only this once):")
    click.echo(key)
    click.echo(f"Usage history: {history}.")
    click.echo(f"The service will be on http://{address}; try:")
    click.echo(f'curl -s -H "Authorization: Bearer {key}" http://{address}/v1/user/balance')


def register_commands(app: Flask) -> None:
    commands = (init_db, create_user, create_token, top_up, disable_token, demo)
    for command in (*commands, check_alerts_command, rollup_usage_command, doctor_command):
        app.cli.add_command(command)
