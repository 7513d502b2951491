"""Logging that can never print an API key, whatever a message or exception contains."""

from __future__ import annotations

import logging
import re

# "sk-" followed by anything key-like, or a bare run of 32+ key characters.
_KEY_PATTERN = re.compile(r"sk-[A-Za-z0-9\-]+|\b[A-Za-z0-9]{32,}\b")


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


def configure(level: str) -> None:
    """Attach the redacting filter to every root handler (gunicorn's and the default one)."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    for handler in root.handlers:
        if not any(isinstance(f, RedactKeys) for f in handler.filters):
            handler.addFilter(RedactKeys())
    logging.getLogger("balance_service").setLevel(level)
