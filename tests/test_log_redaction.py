"""Anything key-shaped is masked in every log line, wherever it stands in the text."""

import logging

import pytest

from balance_service.logging_setup import RedactKeys, configure, redact

KEY = "aB3" * 16  # 48 key characters


@pytest.mark.parametrize(
    "text",
    [
        f"sk-{KEY}",
        f"GET /v1/{KEY}",
        f"/v1/x_{KEY}",  # "_" is a word character: a \b bound would not mask this
        f"/{KEY}é",
        f"/ç{KEY}",
        f"key={KEY}&x=1",
        f"Bearer sk-{KEY}-channel",
    ],
)
def test_keys_are_masked_after_their_first_four_characters(text):
    masked = redact(text)
    assert KEY not in masked
    assert KEY[4:20] not in masked
    assert "[redacted]" in masked


def test_short_runs_and_uuids_are_left_alone():
    text = "request 6f9bb6ad-332a-4980-8ec0-24649e3a5ae9 took 12ms for /v1/balance"
    assert redact(text) == text


def test_gunicorn_log_handlers_get_the_filter_too():
    handler = logging.StreamHandler()
    logger = logging.getLogger("gunicorn.access")
    logger.addHandler(handler)
    try:
        configure("INFO")
        assert any(isinstance(f, RedactKeys) for f in handler.filters)
    finally:
        logger.removeHandler(handler)


def test_handlers_gunicorn_makes_anew_on_a_reload_are_masked_in_every_new_worker():
    """With the app preloaded, a ``kill -HUP`` gives gunicorn new log handlers but builds no new app.

    gunicorn's own logger is used as gunicorn uses it: set up, the app's logging
    configured (as the preloaded app does in the master), then set up again (a
    reload). The worker hook must mask keys in the new handlers.
    """
    import gc

    from gunicorn.config import Config
    from gunicorn.glogging import Logger

    from balance_service import gunicorn_conf

    errors = logging.getLogger("gunicorn.error")
    kept = list(errors.handlers)
    try:
        cfg = Config()
        glog = Logger(cfg)
        configure("INFO")
        glog.setup(cfg)  # what a reload does
        assert errors.handlers and not any(isinstance(f, RedactKeys) for f in errors.handlers[0].filters)
        gunicorn_conf.post_worker_init(worker=None)
        record = errors.makeRecord("gunicorn.error", logging.ERROR, __file__, 1, "Invalid request %s", (KEY,), None)
        for handler in errors.handlers:
            assert handler.filter(record)
        assert KEY not in record.getMessage()
    finally:
        gc.unfreeze()
        errors.handlers[:] = kept
