"""Quota ↔ money conversion, checked with exact Decimal values."""

from decimal import Decimal

import pytest

from balance_service.units import (
    AmountTooLarge,
    NotANumber,
    NotWhole,
    parse_amount,
    quota_to_unit,
    remaining_for_display,
    unit_to_quota,
)

DEFAULTS = {"quota_per_unit": Decimal(500000), "exchange_rate": Decimal("7.3")}


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
    value = quota_to_unit(quota, unit, **DEFAULTS)
    assert value == expected
    assert type(value) is type(expected)


def test_usd_amounts_carry_six_decimal_places():
    assert str(quota_to_unit(750000, "USD", **DEFAULTS)) == "1.500000"


def test_half_a_millionth_rounds_up():
    # 1 quota at 2,000,000 per unit is 0.0000005 USD exactly.
    assert quota_to_unit(1, "USD", Decimal(2000000), Decimal(1)) == Decimal("0.000001")


def test_ten_cents_added_many_times_do_not_drift():
    total = sum((quota_to_unit(50000, "USD", **DEFAULTS) for _ in range(1000)), Decimal(0))
    assert total == Decimal("100")


def test_custom_quota_per_unit_and_rate_are_used():
    assert quota_to_unit(1000, "CNY", Decimal(1000), Decimal("6.5")) == Decimal("6.500000")


def test_unlimited_displays_minus_one_in_every_unit():
    for unit in ("USD", "CNY", "tokens"):
        assert remaining_for_display(123, True, unit=unit, **DEFAULTS) == -1


def test_overdrawn_balance_displays_zero_not_a_negative_amount():
    assert remaining_for_display(-1, False, unit="tokens", **DEFAULTS) == 0
    assert remaining_for_display(-250000, False, unit="USD", **DEFAULTS) == Decimal("0")


def test_unknown_unit_is_an_error():
    with pytest.raises(ValueError):
        quota_to_unit(1, "EUR", **DEFAULTS)


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
    assert unit_to_quota(amount, unit, **DEFAULTS) == expected


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
        parse_amount(value, {"unit": unit, **DEFAULTS})


def test_an_amount_becomes_whole_quota_units_from_text_or_a_number():
    assert parse_amount("0.01", {"unit": "USD", **DEFAULTS}) == 5000
    assert parse_amount(Decimal("7"), {"unit": "tokens", **DEFAULTS}) == 7
