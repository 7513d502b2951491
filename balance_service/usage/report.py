"""The usage figures the endpoints show: date ranges from the query string, amounts in the display unit.

Routes call ``usage_report`` (``GET /v1/usage``) and ``ranged_billing_cents``
(the OpenAI-style billing usage); both read the logs through ``log_source()``
and show amounts in the app's ``currency`` (``gateway/options.py``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from ..errors import ApiError
from ..gateway.options import LOG_CONSUME, currency, gateway_options
from .forecast import Forecast, forecast, forecast_window
from .source import Scope, log_source

#: Longest range ``GET /v1/usage`` and the dated billing usage answer, in days (a leap year): a request
#: must not make the database sum a key's whole history.
MAX_RANGE_DAYS = 366
#: ``GET /v1/usage`` without dates: this many days, ending with today (``end_date`` is tomorrow).
DEFAULT_RANGE_DAYS = 30

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def utc_today() -> date:
    return datetime.now(UTC).date()


def parse_day(name: str, value: str) -> date:
    """A ``YYYY-MM-DD`` query parameter as a date, or a 400 naming the parameter."""
    if _DAY.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    shown = value if len(value) <= 40 else value[:40] + "…"
    raise ApiError(400, f"{name} must be a date as YYYY-MM-DD, got {shown!r}")


def _given(args: Mapping[str, str], name: str) -> str | None:
    value = args.get(name, "").strip()
    return value or None


def _check_range(start: date, end: date) -> None:
    if end <= start:
        raise ApiError(400, "end_date must be after start_date (start_date is included, end_date is not)")
    if (end - start).days > MAX_RANGE_DAYS:
        raise ApiError(400, f"The range may cover at most {MAX_RANGE_DAYS} days")


def billing_range(args: Mapping[str, str]) -> tuple[date, date] | None:
    """``start_date``/``end_date`` of the billing usage; None when neither is given (lifetime usage)."""
    start, end = _given(args, "start_date"), _given(args, "end_date")
    if start is None and end is None:
        return None
    if start is None or end is None:
        raise ApiError(400, "Give both start_date and end_date (YYYY-MM-DD), or neither for lifetime usage")
    first, after = parse_day("start_date", start), parse_day("end_date", end)
    _check_range(first, after)
    return first, after


def usage_range(args: Mapping[str, str], today: date) -> tuple[date, date]:
    """The range of ``GET /v1/usage``: the last ``DEFAULT_RANGE_DAYS`` days up to tomorrow unless given."""
    start, end = _given(args, "start_date"), _given(args, "end_date")
    after = parse_day("end_date", end) if end else today + timedelta(days=1)
    if start:
        first = parse_day("start_date", start)
    else:
        try:
            first = after - timedelta(days=DEFAULT_RANGE_DAYS)
        except OverflowError:
            raise ApiError(400, "end_date is too early") from None
    _check_range(first, after)
    return first, after


#: Why the gateway's logs cannot tell spend over time: a code for programs (``GET /v1/capabilities``)
#: and the words of ``GET /v1/usage``'s 409.
NO_LOGS_TABLE = ("no_logs_table", "the gateway's logs table was not found")
CONSUME_NOT_LOGGED = ("consume_not_logged", f"the gateway does not log consumption ({LOG_CONSUME} is false)")


def logs_gap() -> tuple[str, str] | None:
    """``(code, sentence)`` saying why the gateway's logs cannot tell spend over time, or None when they can."""
    if not log_source().has_logs():
        return NO_LOGS_TABLE
    if not gateway_options().log_consume:
        return CONSUME_NOT_LOGGED
    return None


def logs_unavailable() -> str | None:
    """Why the gateway's logs cannot tell spend over time, or None when they can."""
    gap = logs_gap()
    return None if gap is None else gap[1]


def ranged_billing_cents(scope: Scope, start: date, end: date) -> Decimal | None:
    """Net spend over ``[start, end)`` in US cents, or None when the logs cannot answer (lifetime applies).

    The same rounding as the lifetime figure: the USD amount to 6 places, then cents.
    """
    if logs_unavailable() is not None:
        return None
    return currency().cents(log_source().net_spend(scope, start, end))


def present_forecast(result: Forecast) -> dict[str, Any]:
    """The ``forecast`` object of the answer, in the display unit."""
    return {
        "daily_rate": currency().amount(result.daily_rate),
        "days_left": result.days_left,
        "runs_out_on": None if result.runs_out_on is None else result.runs_out_on.isoformat(),
    }


def scope_forecast(scope: Scope, remaining_quota: int, unlimited: bool, today: date | None = None) -> Forecast | None:
    """The forecast of a scope from the logs, or None when they cannot tell (for alert checks; needs an app context).

    One query (the net spend of ``forecast_window(today)``) after the availability checks.
    """
    if logs_unavailable() is not None:
        return None
    today = today or utc_today()
    return forecast(log_source().net_spend(scope, *forecast_window(today)), remaining_quota, unlimited, today)


def usage_report(
    scope_name: str, scope: Scope, remaining_quota: int, unlimited: bool, start: date, end: date, today: date
) -> dict[str, Any]:
    """The body of ``GET /v1/usage`` (without ``success``): every day of the range, the models, the forecast."""
    reason = logs_unavailable()
    if reason is not None:
        raise ApiError(409, f"Usage history is not available: {reason}")
    source = log_source()
    rows = source.daily_usage(scope, start, end)
    by_day: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    by_model: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        for bucket in (by_day[row.day], by_model[row.model]):
            bucket[0] += row.net_quota
            bucket[1] += row.requests
    window = forecast_window(today)
    if start <= window[0] and window[1] <= end:  # the rows already hold the window: no second query
        recent = sum(row.net_quota for row in rows if window[0] <= row.day < window[1])
    else:
        recent = source.net_spend(scope, *window)
    money = currency()
    amount = money.amount

    days = []
    for offset in range((end - start).days):
        day = start + timedelta(days=offset)
        net, requests = by_day.get(day, (0, 0))
        days.append({"date": day.isoformat(), "used": amount(net), "requests": requests})
    models = [
        {"model": model, "used": amount(net), "requests": requests}
        for model, (net, requests) in sorted(by_model.items(), key=lambda item: (-item[1][0], item[0]))
    ]
    return {
        "scope": scope_name,
        "unit": money.unit,
        "start_date": start.isoformat(),
        "end_date": end.isoformat(),
        "total_used": amount(sum(net for net, _ in by_model.values())),
        "days": days,
        "models": models,
        "forecast": present_forecast(forecast(recent, remaining_quota, unlimited, today)),
    }
