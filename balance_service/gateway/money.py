"""Quota and money: the one conversion between the gateway's quota units and the amounts answers show.

The gateways count credit in integer "quota units"; ``QuotaPerUnit`` of them
make one US dollar, and other currencies are dollars times a rate. Nothing
here touches floats, so an amount is exact to the last displayed digit.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

#: Decimal places of money amounts in responses (one millionth of a unit).
DISPLAY_PLACES = Decimal("0.000001")

#: The same precision written in US cents (the OpenAI billing ``total_usage`` unit).
CENT_PLACES = Decimal("0.0001")

#: The sentinel the API uses for "no limit" instead of an amount.
UNLIMITED = -1

#: The gateways keep quota in signed 64-bit (BIGINT) columns.
MAX_QUOTA = 2**63 - 1

#: The limit OpenAI-style billing reports for unlimited credit, in USD (one-api reports the same figure).
BILLING_UNLIMITED_USD = Decimal(100000000)


class AmountError(ValueError):
    """An amount that cannot become quota units; each caller words the message for its own users."""


class NotANumber(AmountError):
    """Not a decimal number, or not a finite one."""


class NotWhole(AmountError):
    """A fraction where only whole quota units make sense (the unit is raw quota)."""


class AmountTooLarge(AmountError):
    """More (or, negative, less) than a BIGINT quota column can hold."""


@dataclass(frozen=True)
class Currency:
    """How quota is shown: ``unit`` is the name answers carry, ``rate`` how many of it make one US dollar.

    ``rate`` None means raw quota (the unit ``tokens``): whole numbers, no conversion.
    """

    unit: str
    quota_per_unit: Decimal
    rate: Decimal | None = Decimal(1)

    @property
    def usd(self) -> Currency:
        """US dollars at the same ``quota_per_unit`` (what the OpenAI-style billing endpoints report in)."""
        return Currency("USD", self.quota_per_unit)

    def amount(self, quota: int | Decimal) -> Decimal | int:
        """Quota (or a fraction of it, like a daily rate) in this unit: an ``int`` for raw quota, else 6 places."""
        if self.rate is None:
            return int(Decimal(quota).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        amount = Decimal(quota) / self.quota_per_unit
        if self.rate != 1:
            amount *= self.rate
        return amount.quantize(DISPLAY_PLACES, rounding=ROUND_HALF_UP)

    def balance(self, quota: int, unlimited: bool) -> Decimal | int:
        """The ``balance`` field: ``-1`` when unlimited, never below zero otherwise.

        An overdrawn account (the gateway can overdraw a little) shows ``0``:
        ``-1`` means "unlimited" and must stay unambiguous in every unit.
        """
        if unlimited:
            return UNLIMITED
        return self.amount(max(int(quota), 0))

    def cents(self, quota: int) -> Decimal:
        """Quota in US cents: the 6-place USD amount times 100 (OpenAI billing's ``total_usage``)."""
        return (self.usd.amount(quota) * 100).quantize(CENT_PLACES)

    def to_quota(self, amount: Decimal) -> int:
        """An amount in this unit as whole quota units (rounded half up)."""
        value = Decimal(amount)
        if self.rate is not None:
            if self.rate != 1:
                value /= self.rate
            value *= self.quota_per_unit
        return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))

    def parse(self, value: str | int | Decimal) -> int:
        """An amount in this unit (a number or its text) as whole quota units, rounded half up.

        Callers (alert thresholds, CLI top-ups) map the ``AmountError`` subclasses
        to their own messages. The size is checked before converting, so an
        exponent like ``1e999999999`` never becomes a huge integer.
        """
        try:
            amount = Decimal(value)
        except (InvalidOperation, TypeError, ValueError):
            raise NotANumber(f"{value!r} is not a number") from None
        if not amount.is_finite():
            raise NotANumber(f"{value!r} is not a number")
        too_large = AmountTooLarge(f"{value!r} is too large")
        try:  # ArithmeticError: an exponent past the decimal context's limit, far beyond any column
            whole = amount == amount.to_integral_value()
            if self.rate is None and not whole:
                raise NotWhole(f"{value!r} is not a whole number")
            if amount.copy_abs() > MAX_QUOTA:  # copy_abs, unlike abs(), never overflows the context
                raise too_large
            quota = self.to_quota(amount)
        except ArithmeticError:
            raise too_large from None
        if abs(quota) > MAX_QUOTA:
            raise too_large
        return quota

    def billing(self, remaining: int, used: int, unlimited: bool) -> tuple[Decimal, Decimal]:
        """``(hard_limit_usd, total_usage_cents)`` for the OpenAI-style billing endpoints, always USD.

        OpenAI clients show ``hard_limit_usd - total_usage / 100`` as the balance,
        so the limit is the total credit (remaining + used). Both parts are rounded
        to the 6-place USD amounts ``/v1/balance`` shows *before* they are added,
        so the client's subtraction gives exactly that balance. An overdrawn
        balance counts as zero.
        """
        used = max(int(used), 0)
        usage_cents = self.cents(used)
        if unlimited:
            return BILLING_UNLIMITED_USD, usage_cents
        return self.usd.amount(max(int(remaining), 0)) + self.usd.amount(used), usage_cents
