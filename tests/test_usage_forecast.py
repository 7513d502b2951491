"""The forecast as a pure function: what ``/v1/usage`` shows and what an alert check can call."""

from datetime import date
from decimal import Decimal

from balance_service.usage import Forecast, forecast, forecast_window

TODAY = date(2026, 11, 28)


def test_the_window_is_the_7_whole_days_before_today():
    assert forecast_window(TODAY) == (date(2026, 11, 21), TODAY)
    assert forecast_window(date(2026, 3, 3)) == (date(2026, 2, 24), date(2026, 3, 3))


def test_days_left_is_the_balance_over_the_daily_rate():
    assert forecast(350000, 700000, False, TODAY) == Forecast(Decimal(50000), Decimal("14.0"), date(2026, 12, 12))


def test_days_left_is_rounded_down_and_the_day_counts_whole_days():
    result = forecast(7, 10, False, TODAY)  # 1 a day, 10 left
    assert (result.days_left, result.runs_out_on) == (Decimal("10.0"), date(2026, 12, 8))
    result = forecast(3, 1, False, TODAY)  # 7/3 = 2.333… days
    assert (result.days_left, result.runs_out_on) == (Decimal("2.3"), date(2026, 11, 30))


def test_an_overdrawn_balance_has_no_days_left():
    assert forecast(7000, -5, False, TODAY) == Forecast(Decimal(1000), Decimal("0.0"), TODAY)


def test_unlimited_credit_or_no_net_spend_has_no_end():
    assert forecast(7000, 0, True, TODAY) == Forecast(Decimal(1000), None, None)
    assert forecast(0, 100, False, TODAY) == Forecast(Decimal(0), None, None)
    assert forecast(-700, 100, False, TODAY) == Forecast(Decimal(0), None, None)  # refunds exceeded spend


def test_an_end_beyond_the_calendar_has_days_but_no_date():
    result = forecast(1, 2**63 - 1, False, TODAY)
    assert result.days_left == Decimal(7 * (2**63 - 1))
    assert result.runs_out_on is None
