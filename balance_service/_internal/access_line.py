"""The access line written straight to the service's JSON handler, when nothing else would see it.

Through ``logging`` the access line cost a LogRecord, two filters and the
formatter: under load, about as much CPU as the key lookup. When the service's
JSON handler is the only place the line would reach (the default set-up: no
other handler, no filter added by anyone), the same line, masked by the same
function (``logging_setup.redact_line``), is written here directly.

Measured (bench/instructions.py, issue 17): a balance request costs 1,048K
instructions with it, 1,093K without (see the package's docstring); issue 11
measured 140-440 µs of CPU per request for the line through ``logging`` under wrk (bench/README.md).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..logging_setup import OWN_FILTERS, JsonFormatter, StderrHandler, redact_line


def write_access_line(logger: logging.Logger, message: str, request_id: str, fields: dict[str, Any]) -> bool:
    """Write an INFO line of ``logger`` straight to the service's JSON handler; False if it must take logging's path.

    Anything but the default set-up (a test's capture handler, an operator's
    own handler or filter) makes this return False, and the caller logs the
    line as usual.
    """
    handler = sole_json_handler(logger)
    if handler is None:
        return False
    try:
        text = handler.formatter.line(time.time(), "INFO", logger.name, *redact_line(message, request_id, fields))
        stream = handler.stream
        with handler.lock:
            stream.write(text + handler.terminator)
            stream.flush()
    except Exception:  # noqa: BLE001 - logging's own path reports a failing handler its way
        return False
    return True


def sole_json_handler(logger: logging.Logger) -> StderrHandler | None:
    """The service's JSON handler if a record of ``logger`` at INFO would reach it and nothing else."""
    if logger.filters:
        return None
    found = None
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if (
                found is not None
                or type(handler) is not StderrHandler
                or handler.level > logging.INFO
                or [type(f) for f in handler.filters] != OWN_FILTERS
                or type(handler.formatter) is not JsonFormatter
            ):
                return None
            found = handler
        if not current.propagate:
            break
        current = current.parent
    return found
