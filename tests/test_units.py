"""Quota ↔ money conversion (``gateway.money.Currency``), checked with exact Decimal values."""

from decimal import Decimal

import pytest

from balance_service.gateway.money import AmountTooLarge, Currency, NotANumber, NotWhole
from balance_service.gateway.options import GatewayOptions

#: The gateway's defaults: 500,000 quota per dollar, 7.3 CNY per dollar.
CURRENCY = {unit: GatewayOptions().currency(unit) for unit in ("USD", "CNY", "tokens")}


@pytest.mark.parametrize(
    ("quota", "unit", "expected"),
    [
        (500000, "USD", Decimal("1.000000")),
        (1, "USD", Decimal("0.000002")),
        (0, "USD", Decimal("0.000000")),
        (123456789, "USD", Decimal("246.913578")),
        (500000, "CNY", Decimal("7.300000")),
        (1, "CNY", Decimal("0.000015")),  # 0.0000146 rounds half up
        (123456789, "tokens", 123456789),
        (9223372036854775807, "USD", Decimal("18446744073709.551614")),
    ],
)
def test_quota_converts_exactly_to_each_unit(quota, unit, expected):
    value = CURRENCY[unit].amount(quota)
    assert value == expected
    assert type(value) is type(expected)


def test_usd_amounts_carry_six_decimal_places():
    assert str(CURRENCY["USD"].amount(750000)) == "1.500000"


def test_half_a_millionth_rounds_up():
    # 1 quota at 2,000,000 per unit is 0.0000005 USD exactly.
    assert Currency("USD", Decimal(2000000)).amount(1) == Decimal("0.000001")


def test_ten_cents_added_many_times_do_not_drift():
    total = sum((CURRENCY["USD"].amount(50000) for _ in range(1000)), Decimal(0))
    assert total == Decimal("100")


def test_custom_quota_per_unit_and_rate_are_used():
    assert Currency("CNY", Decimal(1000), Decimal("6.5")).amount(1000) == Decimal("6.500000")


def test_a_fractional_quota_figure_is_shown_with_the_same_precision():
    assert CURRENCY["USD"].amount(Decimal("0.5")) == Decimal("0.000001")
    assert CURRENCY["tokens"].amount(Decimal("2.5")) == 3


def test_cents_are_the_rounded_usd_amount_times_a_hundred_in_every_unit():
    assert CURRENCY["CNY"].cents(250000) == CURRENCY["tokens"].cents(250000) == Decimal("50.0000")


def test_unlimited_displays_minus_one_in_every_unit():
    for currency in CURRENCY.values():
        assert currency.balance(123, True) == -1


def test_overdrawn_balance_displays_zero_not_a_negative_amount():
    assert CURRENCY["tokens"].balance(-1, False) == 0
    assert CURRENCY["USD"].balance(-250000, False) == Decimal("0")


@pytest.mark.parametrize(
    ("amount", "unit", "expected"),
    [
        (Decimal("1"), "USD", 500000),
        (Decimal("0.01"), "USD", 5000),
        (Decimal("7.3"), "CNY", 500000),
        (Decimal("1"), "CNY", 68493),  # 68493.15… rounds to the nearest quota unit
        (Decimal("42"), "tokens", 42),
    ],
)
def test_amounts_convert_back_to_whole_quota_units(amount, unit, expected):
    assert CURRENCY[unit].to_quota(amount) == expected


@pytest.mark.parametrize(
    ("value", "unit", "error"),
    [
        ("twelve", "USD", NotANumber),
        ("NaN", "USD", NotANumber),
        ("1.5", "tokens", NotWhole),
        ("1e999999999", "tokens", AmountTooLarge),  # refused before it could become a huge integer
        (Decimal(2**63), "tokens", AmountTooLarge),
        ("-1e300", "CNY", AmountTooLarge),
    ],
)
def test_amounts_that_cannot_be_quota_are_refused_with_the_reason(value, unit, error):
    with pytest.raises(error):
        CURRENCY[unit].parse(value)


def test_an_amount_becomes_whole_quota_units_from_text_or_a_number():
    assert CURRENCY["USD"].parse("0.01") == 5000
    assert CURRENCY["tokens"].parse(Decimal("7")) == 7


def test_a_currency_is_immutable():
    with pytest.raises(AttributeError):
        CURRENCY["USD"].quota_per_unit = Decimal(1)
