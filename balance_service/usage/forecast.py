"""When the money runs out, at the recent rate: a pure function, shared by ``/v1/usage`` and alert checks.

The rate is the net spend (consume − refund) of the ``FORECAST_DAYS`` whole
UTC days before today, divided by that many days: ``forecast_window(today)``
is ``[today − 7 days, today)``. Today's partial day is left out, so the rate
is a true daily average and changes once a day, not with every request.
Everything is in quota units; converting to the display unit is the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_DOWN, Decimal

FORECAST_DAYS = 7

#: ``days_left`` is rounded down to this (never promise more time than there is).
DAYS_PLACES = Decimal("0.1")


@dataclass(frozen=True)
class Forecast:
    """``daily_rate`` in quota units per day (exact); ``days_left``/``runs_out_on`` None when they cannot be told.

    ``days_left`` is None when the credit is unlimited or nothing was spent in
    the window (a net spend of zero or less); ``runs_out_on`` is also None when
    that day is beyond the calendar (year 9999).
    """

    daily_rate: Decimal
    days_left: Decimal | None
    runs_out_on: date | None


def forecast_window(today: date) -> tuple[date, date]:
    """The days whose net spend sets the rate: ``[today − FORECAST_DAYS, today)``, UTC."""
    return today - timedelta(days=FORECAST_DAYS), today


def forecast(net_spend_last_7_days: int, remaining_quota: int, unlimited: bool, today: date) -> Forecast:
    """The forecast from the window's net spend (``forecast_window``) and the credit left now.

    ``days_left`` = remaining ÷ daily rate, rounded down to a tenth; an
    exhausted or overdrawn balance has 0 days left. ``runs_out_on`` is today
    plus the whole days left (``days_left`` 10.7 on 2026-11-28 → 2026-12-08).
    """
    spent = max(int(net_spend_last_7_days), 0)
    rate = Decimal(spent) / FORECAST_DAYS
    if unlimited or spent == 0:
        return Forecast(rate, None, None)
    remaining = max(int(remaining_quota), 0)
    days_left = (Decimal(remaining) * FORECAST_DAYS / Decimal(spent)).quantize(DAYS_PLACES, rounding=ROUND_DOWN)
    try:
        runs_out_on: date | None = today + timedelta(days=int(days_left))
    except OverflowError:
        runs_out_on = None
    return Forecast(rate, days_left, runs_out_on)
