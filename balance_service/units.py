"""Quota-to-money conversion, as pure functions on exact Decimal values.

The gateways count credit in integer "quota units"; ``QUOTA_PER_UNIT`` of them
make one US dollar, and CNY is dollars times the configured exchange rate.
Nothing here touches floats, so a balance is exact to the last displayed digit.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

#: Decimal places of USD/CNY amounts in responses (one millionth of a unit).
DISPLAY_PLACES = Decimal("0.000001")

#: The sentinel the API uses for "no limit" instead of an amount.
UNLIMITED = -1


def quota_to_unit(quota: int, unit: str, quota_per_unit: Decimal, exchange_rate: Decimal) -> Decimal | int:
    """Convert raw quota to the display unit: ``int`` for tokens, a 6-place ``Decimal`` otherwise."""
    if unit == "tokens":
        return int(quota)
    amount = Decimal(int(quota)) / quota_per_unit
    if unit == "CNY":
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


def unit_to_quota(amount: Decimal, unit: str, quota_per_unit: Decimal, exchange_rate: Decimal) -> int:
    """Convert an amount in a display unit back to whole quota units (rounded half up)."""
    if unit == "tokens":
        value = Decimal(amount)
    elif unit == "USD":
        value = Decimal(amount) * quota_per_unit
    elif unit == "CNY":
        value = Decimal(amount) / exchange_rate * quota_per_unit
    else:
        raise ValueError(f"unknown unit {unit!r}")
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))
