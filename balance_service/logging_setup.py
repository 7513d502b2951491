"""Logging that can never print an API key, whatever a message or exception contains."""

from __future__ import annotations

import logging
import re

# "sk-" followed by anything key-like, or a bare run of 32+ key characters. The
# bounds are explicit, not \b: "_" and non-ASCII letters count as word
# characters for \b, so "x_<key>" or "<key>é" would otherwise escape.
_KEY_PATTERN = re.compile(r"sk-[A-Za-z0-9\-]+|(?<![A-Za-z0-9])[A-Za-z0-9]{32,}(?![A-Za-z0-9])")


def redact(text: str) -> str:
    """Keep the first 4 characters of anything key-shaped, mask the rest."""
    return _KEY_PATTERN.sub(lambda m: m.group(0)[:4] + "…[redacted]", text)


class RedactKeys(logging.Filter):
    """Rewrites each record's final message (and traceback) with keys masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg, record.args = redact(message), None
        if record.exc_info:
            formatter = logging.Formatter()
            record.exc_text = redact(formatter.formatException(record.exc_info))
            record.exc_info = None
        return True


#: gunicorn's loggers have handlers of their own and do not propagate to the root.
_GUNICORN_LOGGERS = ("gunicorn.error", "gunicorn.access")


def configure(level: str) -> None:
    """Attach the redacting filter to the root handlers and to gunicorn's own log handlers.

    Under gunicorn the app is built in each worker after gunicorn has set up its
    loggers, so its access log (path with ``GUNICORN_ACCESS_LOG``) and its
    "Invalid request" errors (the request line) are masked too.
    """
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    handlers = list(root.handlers)
    for name in _GUNICORN_LOGGERS:
        handlers.extend(logging.getLogger(name).handlers)
    for handler in handlers:
        if not any(isinstance(f, RedactKeys) for f in handler.filters):
            handler.addFilter(RedactKeys())
    logging.getLogger("balance_service").setLevel(level)
