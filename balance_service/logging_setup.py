"""The service's one logging set-up: a JSON object per line on stderr, the request id inside a request,
and never an API key, whatever a message or exception contains.

Every record reaching the root logger (the service's own, the access log,
third-party libraries') is written by one handler with ``JsonFormatter``:
``ts``, ``level``, ``logger``, ``message``, ``request_id`` when logged while
answering a request, ``exception`` when there is one, and any ``fields`` the
caller passed (``extra={"fields": {...}}``, as the access log does).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from flask import g, has_request_context

# "sk-" followed by anything key-like, or a bare run of 32+ key characters. The
# bounds are explicit, not \b: "_" and non-ASCII letters count as word
# characters for \b, so "x_<key>" or "<key>é" would otherwise escape.
_KEY_PATTERN = re.compile(r"sk-[A-Za-z0-9\-]+|(?<![A-Za-z0-9])[A-Za-z0-9]{32,}(?![A-Za-z0-9])")


#: Shorter than this and without "sk-", a text cannot hold anything key-shaped (see _KEY_PATTERN).
_SHORTEST_BARE_KEY = 32


def redact(text: str) -> str:
    """Keep the first 4 characters of anything key-shaped, mask the rest."""
    if len(text) < _SHORTEST_BARE_KEY and "sk-" not in text:
        return text  # most access-log fields ("GET", "/v1/balance", an address): no regex needed
    return _KEY_PATTERN.sub(_mask, text)


def _mask(match: re.Match[str]) -> str:
    return match.group(0)[:4] + "…[redacted]"


def redact_line(message: str, request_id: Any, fields: Any) -> tuple[str, str | None, Any]:
    """The parts of a log line that can carry a key, masked: the one masking rule of every line.

    ``RedactKeys`` and ``write_access_line`` both call it. A caller's
    ``X-Request-ID`` may itself be key-shaped, so it is masked too.
    """
    if isinstance(fields, dict):
        fields = {name: redact(value) if isinstance(value, str) else value for name, value in fields.items()}
    return redact(message), None if request_id is None else redact(str(request_id)), fields


class RequestId(logging.Filter):
    """Puts the current request's id (``flask.g.request_id``) on records logged while answering a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "request_id" not in record.__dict__ and has_request_context():
            request_id = g.get("request_id")
            if request_id is not None:
                record.request_id = request_id
        return True


class RedactKeys(logging.Filter):
    """Rewrites each record's final message, traceback, request id and fields with keys masked (``redact_line``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Several handlers may carry this filter and they share the record: mask once.
        if getattr(record, "keys_redacted", False):
            return True
        record.keys_redacted = True
        request_id = getattr(record, "request_id", None)
        record.msg, request_id, fields = redact_line(record.getMessage(), request_id, getattr(record, "fields", None))
        record.args = None
        if request_id is not None:
            record.request_id = request_id
        if fields is not None:
            record.fields = fields
        if record.exc_info:
            formatter = logging.Formatter()
            record.exc_text = redact(formatter.formatException(record.exc_info))
            record.exc_info = None
        return True


#: Characters JSON leaves as they are but that line-oriented readers (Python's ``splitlines``,
#: JavaScript, many log shippers) take as line breaks, and a client can put in a path: escaped instead.
_LINE_BREAKS = str.maketrans({c: f"\\u{ord(c):04x}" for c in "\x85\u2028\u2029"})


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line; time in UTC with milliseconds."""

    #: json.dumps with options builds a new encoder on every call; one is enough.
    _encoder = json.JSONEncoder(ensure_ascii=False, default=str)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._second: tuple[int, str] = (-1, "")

    def _timestamp(self, created: float) -> str:
        """``2026-11-28T07:10:35.123+00:00``; the part up to the second is worked out once a second."""
        second = int(created)
        micros = round((created - second) * 1e6)  # rounded to the microsecond first, as datetime does
        if micros >= 1_000_000:
            second, micros = second + 1, micros - 1_000_000
        cached_second, prefix = self._second
        if second != cached_second:
            prefix = datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds")[:-6]
            self._second = (second, prefix)
        return f"{prefix}.{micros // 1000:03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        return self.line(
            record.created,
            record.levelname,
            record.name,
            record.getMessage(),
            getattr(record, "request_id", None),
            getattr(record, "fields", None),
            record.exc_text or None,
            self.formatStack(record.stack_info) if record.stack_info else None,
        )

    def line(
        self,
        created: float,
        level: str,
        logger: str,
        message: str,
        request_id: str | None = None,
        fields: Any = None,
        exception: str | None = None,
        stack: str | None = None,
    ) -> str:
        """The JSON line itself, from a record's parts (``write_access_line`` has no record)."""
        entry: dict[str, Any] = {"ts": self._timestamp(created), "level": level, "logger": logger, "message": message}
        if request_id is not None:
            entry["request_id"] = request_id
        if isinstance(fields, dict):
            entry.update(fields)
        if exception:
            entry["exception"] = exception
        if stack:
            entry["stack"] = stack
        line = self._encoder.encode(entry)
        if "\x85" in line or "\u2028" in line or "\u2029" in line:  # three scans in C beat translate's lookups
            line = line.translate(_LINE_BREAKS)
        return line


#: The filters ``StderrHandler`` is made with, in order: the request id is added first, so that it is masked too.
OWN_FILTERS = [RequestId, RedactKeys]


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the call (gunicorn, pytest capture)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(JsonFormatter())
        for own in OWN_FILTERS:
            self.addFilter(own())

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


#: gunicorn's loggers have handlers of their own and do not propagate to the root.
_GUNICORN_LOGGERS = ("gunicorn.error", "gunicorn.access")


def configure(level: str) -> None:
    """Install the JSON stderr handler on the root logger once; mask keys in every other handler too.

    Handlers someone else put on the root (a test runner's capture) and
    gunicorn's own (its ``--access-logfile``, its "Invalid request" errors
    quoting the request line) keep their format but get the redacting filter.
    """
    root = logging.getLogger()
    if not any(isinstance(h, StderrHandler) for h in root.handlers):
        root.addHandler(StderrHandler())
    mask_all_handlers()
    logging.getLogger("balance_service").setLevel(level)


def mask_all_handlers() -> None:
    """Put the redacting filter on every handler of the root and of gunicorn's loggers that lacks it.

    Also called in every new worker (gunicorn_conf.py ``post_worker_init``): see there.
    """
    handlers = list(logging.getLogger().handlers)
    for name in _GUNICORN_LOGGERS:
        handlers.extend(logging.getLogger(name).handlers)
    for handler in handlers:
        if not any(isinstance(f, RedactKeys) for f in handler.filters):
            handler.addFilter(RedactKeys())
