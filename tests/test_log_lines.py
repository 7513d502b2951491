"""Every log line stays one JSON line, and a key in a long path is masked before the path is cut."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from balance_service.logging_setup import JsonFormatter

pytestmark = pytest.mark.backend_independent

KEY = "aB3" * 16  # 48 key characters, no "sk-": only the bare-run rule can mask it
SEPARATORS = ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"]


@pytest.fixture
def log_client(make_app, capsys):
    client = make_app().test_client()
    capsys.readouterr()
    return client


@pytest.mark.parametrize("separator", SEPARATORS, ids=[f"U+{ord(c):04X}" for c in SEPARATORS])
def test_a_line_separator_in_the_path_does_not_split_the_log_line(log_client, capsys, separator):
    """Log readers split on U+2028, U+2029 and U+0085 too (Python's splitlines, many JSON-lines tools)."""
    path = f"/v1/a{separator}b"
    assert log_client.get(path).status_code == 404
    output = capsys.readouterr().err
    assert separator not in output
    lines = output.splitlines()
    entries = [json.loads(line) for line in lines if '"path"' in line]
    assert [entry["path"] for entry in entries] == [path]
    assert all(line.startswith("{") and line.endswith("}") for line in lines if line)


def test_a_key_at_the_512th_character_of_a_path_is_masked_before_the_path_is_cut(log_client, capsys):
    padding = "/v1/" + "x/" * 244  # the key starts 20 characters before the 512-character cut
    assert len(padding) == 492
    assert log_client.get(padding + KEY).status_code == 404
    output = capsys.readouterr().err
    assert KEY[:20] not in output
    assert KEY[4:12] not in output
    [entry] = [json.loads(line) for line in output.splitlines() if '"path"' in line]
    assert entry["path"] == padding + KEY[:4] + "…[redacted]"


@settings(max_examples=2000, deadline=None)
@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False))  # up to 2100-01-01
def test_log_line_times_are_what_datetime_gives_to_the_millisecond(created):
    """The formatter works out each second's text once and adds the milliseconds; it must round
    exactly as ``datetime`` does (to the microsecond first), or lines near a second's end drift."""
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    record.created = created
    line = json.loads(JsonFormatter().format(record))
    assert line["ts"] == datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")


@pytest.mark.parametrize("fraction", [0.9994999, 0.9995, 0.9999994, 0.9999995, 0.0000005, 0.0])
def test_log_line_times_roll_over_into_the_next_second_as_datetime_does(fraction):
    formatter = JsonFormatter()
    for second in (1_764_316_799, 1_764_316_800):  # one formatter, consecutive seconds: its cache must follow
        created = second + fraction
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
        record.created = created
        expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
        assert json.loads(formatter.format(record))["ts"] == expected
