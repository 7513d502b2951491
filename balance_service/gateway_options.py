"""The gateway's own settings, read from its ``options`` table and cached per worker.

one-api and new-api keep their settings as ``key``/``value`` text rows. The ones
that change what this service shows: ``QuotaPerUnit`` (quota units per US
dollar), ``USDExchangeRate`` (CNY per dollar), new-api's
``general_setting.quota_display_type`` (USD, CNY, TOKENS or CUSTOM, the last
with ``general_setting.custom_currency_symbol`` and ``…custom_currency_exchange_rate``),
and one-api's ``DisplayInCurrencyEnabled`` ("false": raw quota), which counts
only when the display type row is absent, as new-api's own admin page does.
``DisplayTokenStatEnabled`` and ``LogConsumeEnabled`` are read too, for the
endpoints that depend on them.

A missing table or row is the gateway's default. A value the gateway could not
have meant (``QuotaPerUnit`` of ``abc`` or ``0``) logs a warning and is replaced
by the default: a balance request never fails because of a setting. The
environment's ``BALANCE_UNIT``, ``QUOTA_PER_UNIT`` and ``USD_EXCHANGE_RATE``,
where set, override the table.

The rows are read at most once per ``GATEWAY_OPTIONS_TTL`` seconds per worker,
so a change in the gateway's admin panel shows within that time, and a balance
request with a warm cache is still one SQL statement. If a re-read fails, the
values read before stay in use until the next attempt.

Nothing here writes to the table.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from flask import current_app
from sqlalchemy import Engine, String, Text, column, inspect, select, table
from sqlalchemy.exc import SQLAlchemyError

from .extensions import db

log = logging.getLogger(__name__)

#: ``key`` is a reserved word: a lightweight table() quotes it for each dialect.
OPTIONS = table("options", column("key", String()), column("value", Text()))

QUOTA_PER_UNIT = "QuotaPerUnit"
USD_EXCHANGE_RATE = "USDExchangeRate"
DISPLAY_TYPE = "general_setting.quota_display_type"
CUSTOM_SYMBOL = "general_setting.custom_currency_symbol"
CUSTOM_RATE = "general_setting.custom_currency_exchange_rate"
DISPLAY_IN_CURRENCY = "DisplayInCurrencyEnabled"
DISPLAY_TOKEN_STAT = "DisplayTokenStatEnabled"
LOG_CONSUME = "LogConsumeEnabled"
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
#: The service's unit names (``BALANCE_UNIT``, the ``unit`` field) for the gateway's display types.
_UNIT_OF = {USD: "USD", CNY: "CNY", TOKENS: "tokens"}
_DISPLAY_TYPE_OF = {unit: display for display, unit in _UNIT_OF.items()}

#: The values Go's strconv.ParseBool accepts, which is how the gateways read these rows.
_TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})
_FALSE = frozenset({"0", "f", "F", "false", "FALSE", "False"})

_EXTENSION = "balance_gateway_options"


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

    def conversion(self) -> dict[str, Any]:
        """Keyword arguments of ``units.quota_to_unit`` / ``unit_to_quota`` for this display type.

        CUSTOM is shown as the gateway shows it: dollars times the custom rate,
        under the custom symbol.
        """
        custom = self.display_type == CUSTOM
        return {
            "unit": self.unit,
            "quota_per_unit": self.quota_per_unit,
            "exchange_rate": self.custom_currency_exchange_rate if custom else self.usd_exchange_rate,
            "custom": custom,
        }


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


def _bool(values: Mapping[str, str], name: str, default: bool) -> bool:
    raw = values.get(name)
    if raw is None:
        return default
    value = raw.strip()
    if value in _TRUE or value in _FALSE:
        return value in _TRUE
    _malformed(name, raw, str(default).lower())
    return default


def _display_type(values: Mapping[str, str]) -> str:
    """new-api's display type row; without it, one-api's DisplayInCurrencyEnabled (false: raw quota)."""
    raw = values.get(DISPLAY_TYPE)
    if raw is not None:
        value = raw.strip().upper()
        if value in DISPLAY_TYPES:
            return value
        _malformed(DISPLAY_TYPE, raw, f"{DISPLAY_IN_CURRENCY} or {USD}")
    return USD if _bool(values, DISPLAY_IN_CURRENCY, True) else TOKENS


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
        display_token_stat=_bool(values, DISPLAY_TOKEN_STAT, default.display_token_stat),
        log_consume=_bool(values, LOG_CONSUME, default.log_consume),
    )


def read(engine: Engine) -> GatewayOptions:
    """One SELECT of the rows in ``NAMES``; a database without an ``options`` table gets the defaults.

    Any other database error is raised (the caller answers 503, or keeps the
    values it read before).
    """
    stmt = select(OPTIONS.c.key, OPTIONS.c.value).where(OPTIONS.c.key.in_(NAMES))
    try:
        with engine.connect() as connection:
            rows = connection.execute(stmt).all()
    except SQLAlchemyError as e:
        if _permission_denied(e):
            # A role granted only users and tokens (all that earlier versions needed) must not
            # turn every balance into a 503: the gateway's defaults apply, as without the table.
            log.warning("the database role may not read the gateway's options table: its defaults apply")
            return GatewayOptions()
        if inspect(engine).has_table(OPTIONS.name):
            raise
        log.debug("no options table: the gateway's default settings apply")
        return GatewayOptions()
    # MySQL's default collation would also match a row whose key differs in case.
    return parse({key: value for key, value in rows if key in NAMES and value is not None})


#: PostgreSQL's SQLSTATE and MySQL/MariaDB's error numbers for "no SELECT privilege on this table".
_PG_INSUFFICIENT_PRIVILEGE = "42501"
_MYSQL_ACCESS_DENIED = (1142, 1143)


def _permission_denied(error: SQLAlchemyError) -> bool:
    orig = getattr(error, "orig", None)
    if getattr(orig, "pgcode", None) == _PG_INSUFFICIENT_PRIVILEGE:
        return True
    args = getattr(orig, "args", ())
    return bool(args) and args[0] in _MYSQL_ACCESS_DENIED


class OptionsCache:
    """The last options read and when they go stale; ``clock`` is injectable for tests."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._value: GatewayOptions | None = None
        self._stale_at = 0.0
        self._lock = threading.Lock()

    def get(self, load: Callable[[], GatewayOptions]) -> GatewayOptions:
        value = self._value
        if value is not None and self.clock() < self._stale_at:
            return value
        with self._lock:  # one thread re-reads, the others wait for its answer
            if self._value is not None and self.clock() < self._stale_at:
                return self._value
            try:
                value = load()
            except SQLAlchemyError as e:
                if self._value is None:
                    raise
                log.warning("could not re-read the gateway's options, keeping the last values: %s", type(e).__name__)
                value = self._value
            self._value, self._stale_at = value, self.clock() + self.ttl
            return value


def cache() -> OptionsCache:
    """The current app's cache (one per app, so per gunicorn worker), made on first use."""
    extensions = current_app.extensions
    if _EXTENSION not in extensions:
        extensions.setdefault(_EXTENSION, OptionsCache(current_app.config.get("GATEWAY_OPTIONS_TTL", 60)))
    return extensions[_EXTENSION]


def gateway_options() -> GatewayOptions:
    """The gateway's options as its table has them (cached), without the environment's overrides."""
    return cache().get(lambda: read(db.engine))


def with_overrides(options: GatewayOptions, config: Mapping[str, Any]) -> GatewayOptions:
    """``options`` with the unit settings the environment (or the app's caller) set laid over them."""
    changes: dict[str, Any] = {}
    unit = config.get("BALANCE_UNIT")
    if unit is not None:
        if unit not in _DISPLAY_TYPE_OF:
            raise ValueError(f"unknown unit {unit!r}")
        changes["display_type"] = _DISPLAY_TYPE_OF[unit]
    if config.get("QUOTA_PER_UNIT") is not None:
        changes["quota_per_unit"] = config["QUOTA_PER_UNIT"]
    if config.get("USD_EXCHANGE_RATE") is not None:
        changes["usd_exchange_rate"] = config["USD_EXCHANGE_RATE"]
    return dataclasses.replace(options, **changes)


_UNIT_SETTINGS = ("BALANCE_UNIT", "QUOTA_PER_UNIT", "USD_EXCHANGE_RATE")


def effective(config: Mapping[str, Any]) -> GatewayOptions:
    """The options in effect: the environment's unit settings over the gateway's table (needs an app context)."""
    return with_overrides(gateway_options(), config)


def effective_conversion(config: Mapping[str, Any]) -> dict[str, Any]:
    """``effective(config).conversion()``; no SQL at all when every unit setting is given.

    Every balance answer needs it, and the inputs change only when the options
    are re-read or the config changes, so the result is kept per input
    (``_conversion_of``); each caller gets a copy of its own to change.
    """
    overrides = tuple(config.get(name) for name in _UNIT_SETTINGS)
    options = GatewayOptions() if None not in overrides else gateway_options()
    return dict(_conversion_of(options, overrides))


@lru_cache(maxsize=32)
def _conversion_of(options: GatewayOptions, overrides: tuple[Any, ...]) -> dict[str, Any]:
    return with_overrides(options, dict(zip(_UNIT_SETTINGS, overrides, strict=True))).conversion()
