"""The gateway's own settings, read from its ``options`` table (``NAMES``; cached for ``tables.TTL``, so a
balance request with a warm cache is still one SQL statement).

one-api and new-api keep their settings as ``key``/``value`` text rows.
one-api's ``DisplayInCurrencyEnabled`` (not ``true``: raw quota) counts only
when new-api's display type row is absent, as new-api's own admin page does.
Every ``…Enabled`` row is read as both gateways read it: on exactly when the
value is ``true``. A missing table or row is the gateway's default. A number
the gateway could not have meant (``QuotaPerUnit`` of ``abc`` or ``0``) logs a
warning and is replaced by the default: a balance request never fails because
of a setting. ``BALANCE_UNIT``, where set, overrides the display unit; nothing
else overrides the table. Nothing here writes to the table.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from sqlalchemy import Engine, inspect, select
from sqlalchemy.exc import SQLAlchemyError

from ..config import UNITS, settings
from ..extensions import db
from .money import Currency
from .tables import cache, options

log = logging.getLogger(__name__)

QUOTA_PER_UNIT = "QuotaPerUnit"  # quota units per US dollar
USD_EXCHANGE_RATE = "USDExchangeRate"  # CNY per dollar
DISPLAY_TYPE = "general_setting.quota_display_type"
CUSTOM_SYMBOL = "general_setting.custom_currency_symbol"
CUSTOM_RATE = "general_setting.custom_currency_exchange_rate"
DISPLAY_IN_CURRENCY = "DisplayInCurrencyEnabled"
DISPLAY_TOKEN_STAT = "DisplayTokenStatEnabled"  # the billing endpoints: the key's figures, or the account's
LOG_CONSUME = "LogConsumeEnabled"  # whether the logs can tell spend
NAMES = (
    QUOTA_PER_UNIT,
    USD_EXCHANGE_RATE,
    DISPLAY_TYPE,
    CUSTOM_SYMBOL,
    CUSTOM_RATE,
    DISPLAY_IN_CURRENCY,
    DISPLAY_TOKEN_STAT,
    LOG_CONSUME,
)

USD, CNY, TOKENS, CUSTOM = "USD", "CNY", "TOKENS", "CUSTOM"
DISPLAY_TYPES = (USD, CNY, TOKENS, CUSTOM)
#: The service's unit names (``BALANCE_UNIT``, the ``unit`` field, stated in config.UNITS) for the gateway's
#: display types, in the same order.
_UNIT_OF = dict(zip((USD, CNY, TOKENS), UNITS, strict=True))
_DISPLAY_TYPE_OF = {unit: display for display, unit in _UNIT_OF.items()}

#: The one value of an ``…Enabled`` row that means on, for one-api and new-api alike (compared as stored).
_ON = "true"


@dataclass(frozen=True)
class GatewayOptions:
    """The gateway's settings that matter here; the defaults are the gateway's own (new-api's for CNY and CUSTOM)."""

    quota_per_unit: Decimal = Decimal(500000)
    usd_exchange_rate: Decimal = Decimal("7.3")
    display_type: str = USD
    custom_currency_symbol: str = "¤"
    custom_currency_exchange_rate: Decimal = Decimal(1)
    display_token_stat: bool = True
    log_consume: bool = True

    @property
    def unit(self) -> str:
        """The ``unit`` answers carry: USD, CNY, tokens, or the custom currency's symbol."""
        return self.custom_currency_symbol if self.display_type == CUSTOM else _UNIT_OF[self.display_type]

    def currency(self, unit: str | None = None) -> Currency:
        """How amounts are shown: in ``unit`` (USD, CNY or tokens) when given, else in the display type.

        CUSTOM, as the gateway shows it: dollars times the custom rate, under the custom symbol.
        """
        display = self.display_type if unit is None else _DISPLAY_TYPE_OF.get(unit)
        if display is None:
            raise ValueError(f"unknown unit {unit!r}")
        if display == TOKENS:
            return Currency(_UNIT_OF[TOKENS], self.quota_per_unit, None)
        if display == CUSTOM:
            return Currency(self.unit, self.quota_per_unit, self.custom_currency_exchange_rate)
        rate = self.usd_exchange_rate if display == CNY else Decimal(1)
        return Currency(_UNIT_OF[display], self.quota_per_unit, rate)


def _malformed(name: str, raw: str, fallback: object) -> None:
    log.warning("gateway option %s has a value the service cannot use (%r); using %s instead", name, raw[:64], fallback)


def _positive_decimal(values: Mapping[str, str], name: str, default: Decimal) -> Decimal:
    raw = values.get(name)
    if raw is None:
        return default
    try:
        value = Decimal(raw.strip())
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or value <= 0:
        _malformed(name, raw, default)
        return default
    return value


def _enabled(values: Mapping[str, str], name: str) -> bool:
    """An ``…Enabled`` row: on when absent (the gateways' default for the ones read here) or exactly ``true``."""
    raw = values.get(name)
    return raw is None or raw == _ON


def _display_type(values: Mapping[str, str]) -> str:
    """new-api's display type row; without it, one-api's DisplayInCurrencyEnabled (false: raw quota)."""
    raw = values.get(DISPLAY_TYPE)
    if raw is not None:
        value = raw.strip().upper()
        if value in DISPLAY_TYPES:
            return value
        _malformed(DISPLAY_TYPE, raw, f"{DISPLAY_IN_CURRENCY} or {USD}")
    return USD if _enabled(values, DISPLAY_IN_CURRENCY) else TOKENS


def parse(values: Mapping[str, str]) -> GatewayOptions:
    """Options from the table's rows (``key`` → ``value``); absent or unusable rows keep the default."""
    default = GatewayOptions()
    symbol = (values.get(CUSTOM_SYMBOL) or "").strip() or default.custom_currency_symbol
    return GatewayOptions(
        quota_per_unit=_positive_decimal(values, QUOTA_PER_UNIT, default.quota_per_unit),
        usd_exchange_rate=_positive_decimal(values, USD_EXCHANGE_RATE, default.usd_exchange_rate),
        display_type=_display_type(values),
        custom_currency_symbol=symbol,
        custom_currency_exchange_rate=_positive_decimal(values, CUSTOM_RATE, default.custom_currency_exchange_rate),
        display_token_stat=_enabled(values, DISPLAY_TOKEN_STAT),
        log_consume=_enabled(values, LOG_CONSUME),
    )


def read_rows(engine: Engine) -> dict[str, str]:
    """One SELECT of the rows in ``NAMES``, as stored; none when there is no ``options`` table (else it raises)."""
    stmt = select(options.c.key, options.c.value).where(options.c.key.in_(NAMES))
    try:
        with engine.connect() as connection:
            rows = connection.execute(stmt).all()
    except SQLAlchemyError as e:
        if _permission_denied(e):
            # A role granted only users and tokens (all that earlier versions needed) must not
            # turn every balance into a 503: the gateway's defaults apply, as without the table.
            log.warning("the database role may not read the gateway's options table: its defaults apply")
            return {}
        if inspect(engine).has_table(options.name):
            raise
        log.debug("no options table: the gateway's default settings apply")
        return {}
    # MySQL's default collation would also match a row whose key differs in case.
    return {key: value for key, value in rows if key in NAMES and value is not None}


#: PostgreSQL's SQLSTATE and MySQL/MariaDB's error numbers for "no SELECT privilege on this table".
_PG_INSUFFICIENT_PRIVILEGE = "42501"
_MYSQL_ACCESS_DENIED = (1142, 1143)


def _permission_denied(error: SQLAlchemyError) -> bool:
    orig = getattr(error, "orig", None)
    if getattr(orig, "pgcode", None) == _PG_INSUFFICIENT_PRIVILEGE:
        return True
    args = getattr(orig, "args", ())
    return bool(args) and args[0] in _MYSQL_ACCESS_DENIED


def gateway_options() -> GatewayOptions:
    """The gateway's options as its table has them (cached; needs an app context)."""
    engine = db.engine
    return cache.get(engine, "options", lambda: parse(read_rows(engine)))


def currency() -> Currency:
    """How the current app shows amounts: the gateway's options, in ``BALANCE_UNIT`` where that is set."""
    return _currency_of(gateway_options(), settings().balance_unit)


@lru_cache(maxsize=32)
def _currency_of(options: GatewayOptions, unit: str | None) -> Currency:
    return options.currency(unit)
