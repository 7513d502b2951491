"""Spend over time from the gateway's request logs: date-ranged usage, daily history, a forecast.

- ``source``: the ``LogSource`` interface (``daily_usage``, ``net_spend``, ``has_logs``);
  ``log_source()`` picks the one the app uses.
- ``rollup``: the usage roll-up (log rows summed once by id into ``usage_rollup``) and the SQL source that
  adds it to the newer raw rows; ``cli``: ``flask rollup-usage``.
- ``forecast``: the pure ``forecast(net_spend_last_7_days, remaining_quota, unlimited, today)``.
- ``report``: query-string dates and the answers of ``GET /v1/usage`` and the ranged billing usage.
- ``doctor``: ``flask doctor``, which inspects the gateway database and recommends indexes.
"""

from .forecast import FORECAST_DAYS, Forecast, forecast, forecast_window
from .source import LogSource, Scope, UsageRow, log_source

__all__ = [
    "FORECAST_DAYS",
    "Forecast",
    "LogSource",
    "Scope",
    "UsageRow",
    "forecast",
    "forecast_window",
    "log_source",
]
