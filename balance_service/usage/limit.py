"""At most a few slow requests at once on one host: log queries (``GET /v1/usage``, the dated billing usage) and
the alerts' test messages, together.

A usage query sums up to a year of one account's log rows: 0.3-1 s of database
work each, where a balance lookup is one indexed row; a test message may wait
10-20 s on its target. A client sending such requests as fast as they are
answered would hold every worker; so at most ``SLOTS`` of them run at once per
host and log database, in slots shared by every worker
(``_internal/host_slots.py``), and the next is refused with a 503 and
``Retry-After`` at once while balances keep answering.
"""

from __future__ import annotations

import os

from flask import Flask, current_app

from .._internal.host_slots import HostSlots, install

#: Slow requests in flight at once per host and log database: half the cores, at least one. gunicorn starts
#: cores + 1 workers (gunicorn_conf.py), so at most about half of them are busy with logs or test messages and
#: the database keeps cores for balances. (A fixed rule, not a setting: more parallel year-long sums only make
#: each of them slower.)
SLOTS = max(1, (os.cpu_count() or 2) // 2)
#: The answer when every slot is taken; a usage query takes about a second at worst.
BUSY_MESSAGE = "Too many usage queries in progress; retry later"
#: The slots' directory is named after this and the log database.
KIND = "usage"

_EXTENSION = "balance_service.usage_slots"


def slots_for(url: str) -> HostSlots:
    """The usage slots every process of this user shares for the log database at ``url``."""
    return HostSlots.for_database(url, KIND, SLOTS, BUSY_MESSAGE)


def init_app(app: Flask, log_database_url: str | None) -> None:
    """The app's usage slots, for the log database (the main one when the logs are there)."""
    install(app, _EXTENSION, slots_for(log_database_url or app.config["SQLALCHEMY_DATABASE_URI"]))


def usage_slots() -> HostSlots:
    """The current app's slots."""
    return current_app.extensions[_EXTENSION]
