"""Quota-to-money conversion, as pure functions on exact Decimal values.

The gateways count credit in integer "quota units"; ``QUOTA_PER_UNIT`` of them
make one US dollar, and CNY is dollars times the configured exchange rate. A
gateway's CUSTOM currency is dollars times its own rate, shown under its own
symbol. Nothing here touches floats, so a balance is exact to the last
displayed digit.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

#: Decimal places of USD/CNY amounts in responses (one millionth of a unit).
DISPLAY_PLACES = Decimal("0.000001")

#: The same precision written in US cents (the OpenAI billing ``total_usage`` unit).
CENT_PLACES = Decimal("0.0001")

#: The sentinel the API uses for "no limit" instead of an amount.
UNLIMITED = -1

#: The gateways keep quota in signed 64-bit (BIGINT) columns.
MAX_QUOTA = 2**63 - 1


def conversion(config: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``quota_to_unit`` / ``unit_to_quota`` in effect for the current app.

    The environment's ``BALANCE_UNIT``, ``QUOTA_PER_UNIT`` and ``USD_EXCHANGE_RATE``
    where set, the gateway's own ``options`` table (cached) for the rest; needs
    an app context. See ``gateway_options``.
    """
    from .gateway_options import effective_conversion  # units stays importable without Flask

    return effective_conversion(config)


def quota_to_unit(
    quota: int, unit: str, quota_per_unit: Decimal, exchange_rate: Decimal, custom: bool = False
) -> Decimal | int:
    """Convert raw quota to the display unit: ``int`` for tokens, a 6-place ``Decimal`` otherwise.

    ``custom``: ``unit`` is a gateway's custom currency symbol and ``exchange_rate``
    its rate (1 USD = rate units), as with CNY.
    """
    if unit == "tokens" and not custom:
        return int(quota)
    amount = Decimal(int(quota)) / quota_per_unit
    if unit == "CNY" or custom:
        amount *= exchange_rate
    elif unit != "USD":
        raise ValueError(f"unknown unit {unit!r}")
    return amount.quantize(DISPLAY_PLACES, rounding=ROUND_HALF_UP)


def remaining_for_display(quota: int, unlimited: bool, **conversion) -> Decimal | int:
    """The ``balance`` field: ``-1`` when unlimited, never below zero otherwise.

    An overdrawn account (the gateway can push a balance slightly negative when
    a request costs more than was left) shows ``0``, because ``-1`` is reserved
    for "unlimited" and must stay unambiguous in every unit.
    """
    if unlimited:
        return UNLIMITED
    return quota_to_unit(max(int(quota), 0), **conversion)


def unit_to_quota(
    amount: Decimal, unit: str, quota_per_unit: Decimal, exchange_rate: Decimal, custom: bool = False
) -> int:
    """Convert an amount in a display unit back to whole quota units (rounded half up)."""
    if unit == "tokens" and not custom:
        value = Decimal(amount)
    elif unit == "USD" and not custom:
        value = Decimal(amount) * quota_per_unit
    elif unit == "CNY" or custom:
        value = Decimal(amount) / exchange_rate * quota_per_unit
    else:
        raise ValueError(f"unknown unit {unit!r}")
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


class AmountError(ValueError):
    """An amount that cannot become quota units; each caller words the message for its own users."""


class NotANumber(AmountError):
    """Not a decimal number, or not a finite one."""


class NotWhole(AmountError):
    """A fraction where only whole quota units make sense (the unit is tokens / quota)."""


class AmountTooLarge(AmountError):
    """More (or, negative, less) than a BIGINT quota column can hold."""


def parse_amount(value: str | int | Decimal, conversion: Mapping[str, Any]) -> int:
    """An amount in ``conversion["unit"]`` (a number or its text) as whole quota units, rounded half up.

    Used by the alert API (thresholds) and the operator CLI (top-ups); each
    checks its own rules first (a JSON number, not negative, ...) and maps the
    ``AmountError`` subclasses to its own messages. The size is checked before
    converting, so an exponent like ``1e999999999`` never becomes a huge integer.
    """
    try:
        amount = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise NotANumber(f"{value!r} is not a number") from None
    if not amount.is_finite():
        raise NotANumber(f"{value!r} is not a number")
    try:
        whole = amount == amount.to_integral_value()
    except ArithmeticError:  # an exponent past the decimal context's limit: far beyond any column
        raise AmountTooLarge(f"{value!r} is too large") from None
    if conversion["unit"] == "tokens" and not conversion.get("custom") and not whole:
        raise NotWhole(f"{value!r} is not a whole number")
    if amount.copy_abs() > MAX_QUOTA:  # copy_abs, unlike abs(), never overflows the context
        raise AmountTooLarge(f"{value!r} is too large")
    try:
        quota = unit_to_quota(amount, **conversion)
    except ArithmeticError:
        raise AmountTooLarge(f"{value!r} is too large") from None
    if abs(quota) > MAX_QUOTA:
        raise AmountTooLarge(f"{value!r} is too large")
    return quota


#: The limit OpenAI-style billing reports for unlimited credit, in USD (one-api reports the same figure).
BILLING_UNLIMITED_USD = Decimal(100000000)


def billing_amounts(remaining: int, used: int, unlimited: bool, quota_per_unit: Decimal) -> tuple[Decimal, Decimal]:
    """``(hard_limit_usd, total_usage_cents)`` for the OpenAI-style billing endpoints.

    OpenAI clients show ``hard_limit_usd - total_usage / 100`` as the balance,
    so the limit is the total credit (remaining + used). Both parts are rounded
    to the 6-place USD amounts ``/v1/balance`` shows *before* they are added,
    so the client's subtraction gives exactly that balance. An overdrawn
    balance counts as zero (a limit is never below what was used, never
    negative); unlimited credit is ``BILLING_UNLIMITED_USD``. Always USD and
    US cents, whatever the display unit is: that is what the clients expect.
    """
    conversion = {"unit": "USD", "quota_per_unit": quota_per_unit, "exchange_rate": Decimal(1)}
    used_usd = quota_to_unit(max(int(used), 0), **conversion)
    usage_cents = (used_usd * 100).quantize(CENT_PLACES)
    if unlimited:
        return BILLING_UNLIMITED_USD, usage_cents
    return quota_to_unit(max(int(remaining), 0), **conversion) + used_usd, usage_cents
