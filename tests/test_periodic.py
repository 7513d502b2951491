"""``--loop SECONDS`` (``check-alerts``, ``rollup-usage``): a pass every SECONDS, whatever one pass met.

The loop's clock and wait are replaced: each pass "takes" 5 s of the fake clock,
and the fifth wait is the operator's Ctrl-C.
"""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.exc import OperationalError

from balance_service import periodic

pytestmark = pytest.mark.backend_independent


class WentBack(Exception):
    """Stands for an error a command wants logged (``LogsWentBack``, ``NotMigrated``)."""


class Said(Exception):
    """Stands for an error whose cause a command logs itself."""


def _raise(error: Exception):
    def one_pass() -> str:
        raise error

    return one_pass


def test_a_loop_runs_a_pass_every_interval_through_failures_until_ctrl_c(app, monkeypatch, caplog, capsys):
    now = [1000.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 5:
            raise KeyboardInterrupt
        now[0] += seconds

    def pass_of(result):
        def one_pass() -> str:
            now[0] += 5  # each pass takes 5 s
            return result() if callable(result) else result

        return one_pass

    passes = iter(
        [
            pass_of("rolled up log ids 1-100"),
            pass_of(_raise(OperationalError("SELECT 1", {}, Exception("server closed the connection")))),
            pass_of(_raise(WentBack("the logs' largest id is below the roll-up's"))),
            pass_of(_raise(Said("logged elsewhere"))),
            pass_of("rolled up log ids 101-140"),
        ]
    )
    monkeypatch.setattr(periodic, "clock", lambda: now[0])
    monkeypatch.setattr(periodic, "sleep", sleep)
    with app.app_context(), caplog.at_level(logging.ERROR, logger="balance_service.periodic"):
        periodic.run_every(30, lambda: next(passes)(), "rollup-usage", logged=(WentBack,), quiet=(Said,))

    assert capsys.readouterr().out == "rolled up log ids 1-100\nrolled up log ids 101-140\nstopped\n"
    assert [r.getMessage() for r in caplog.records] == [
        "rollup-usage: database error: OperationalError",
        "rollup-usage: the logs' largest id is below the roll-up's",
    ]
    assert waits == [25.0] * 5  # every 30 s from the start of a pass, failed or not
