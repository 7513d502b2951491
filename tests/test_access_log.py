"""One JSON line per request on stderr (logger balance_service.access), never carrying a key."""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager

import pytest

from balance_service._internal.access_line import sole_json_handler
from balance_service.logging_setup import StderrHandler

# Whether and how this works cannot depend on the database: SQLite only (conftest.py).
pytestmark = pytest.mark.backend_independent


def access_lines(capsys) -> list[dict]:
    """The JSON access-log lines written to stderr since the last call."""
    lines = []
    for line in capsys.readouterr().err.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if "request_id" in entry and "route" in entry:
                lines.append(entry)
    return lines


@pytest.fixture
def log_client(make_app, capsys):
    client = make_app().test_client()
    access_lines(capsys)  # start from a clean slate
    return client


def test_each_request_writes_one_json_line_with_route_status_and_timing(log_client, create_token, auth, capsys):
    key = create_token(remain_quota=5)
    response = log_client.get("/v1/balance", headers=auth(key), environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert response.status_code == 200
    [entry] = access_lines(capsys)
    assert entry["method"] == "GET"
    assert entry["route"] == "/v1/balance"
    assert entry["path"] == "/v1/balance"
    assert entry["status"] == 200
    assert entry["remote_addr"] == "192.0.2.7"
    assert entry["request_id"] == response.headers["X-Request-ID"]
    assert isinstance(entry["duration_ms"], float) and entry["duration_ms"] >= 0
    assert entry["ts"].endswith("+00:00")


def test_the_key_never_reaches_the_log_from_header_query_or_path(log_client, create_token, auth, capsys):
    key = create_token(remain_quota=5)
    assert log_client.get(f"/v1/balance?key={key}", headers=auth(key)).status_code == 200
    assert log_client.get(f"/v1/{key}").status_code == 404
    assert log_client.get("/v1/balance", headers={"X-Request-ID": key[3:]}).status_code == 401
    output = capsys.readouterr().err
    entries = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert [e["status"] for e in entries] == [200, 404, 401]
    assert entries[0]["path"] == "/v1/balance"
    assert entries[1]["route"] == "unmatched"
    assert "[redacted]" in entries[1]["path"]
    assert "[redacted]" in entries[2]["request_id"]
    assert key[3:] not in output
    assert key[3:11] not in output
    assert "Bearer" not in output


def test_error_responses_are_logged_too(log_client, capsys):
    log_client.get("/v1/balance")
    log_client.post("/v1/balance")
    assert [(e["route"], e["status"]) for e in access_lines(capsys)] == [("/v1/balance", 401), ("unmatched", 405)]


class _Collect(logging.Handler):
    """An operator's own handler next to the service's: the access line must reach it too."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def production_loggers():
    """The logger tree as the service runs: the service's own handler alone on the root.

    pytest puts capture handlers of its own on the root while a test runs
    (after its fixtures are set up), which would always send the access line
    through logging; they are set aside here, inside the test.
    """
    root = logging.getLogger()
    others = [h for h in root.handlers if not isinstance(h, StderrHandler)]
    for handler in others:
        root.removeHandler(handler)
    try:
        assert sole_json_handler(logging.getLogger("balance_service.access")) is not None
        yield
    finally:
        for handler in others:
            root.addHandler(handler)


@pytest.mark.parametrize("attach_to", ["", "balance_service", "balance_service.access"])
def test_the_line_is_the_same_whether_written_directly_or_through_another_handler(
    log_client, create_token, auth, capsys, attach_to
):
    """Alone, the service's handler gets the line written straight to it; with a handler of someone
    else's on the way, the line goes through logging as usual. Both lines carry the same fields,
    masked the same way, and the other handler gets its copy."""
    key = create_token(remain_quota=5)
    headers = {**auth(key), "X-Request-ID": "sk-" + "r" * 40}  # a key-shaped id: masked in both paths
    path = f"/v1/balance?ignored=1&sk-{'q' * 40}"

    def one_line() -> dict:
        assert log_client.get(path, headers=headers, environ_base={"REMOTE_ADDR": "192.0.2.7"}).status_code == 200
        [entry] = access_lines(capsys)
        return {name: value for name, value in entry.items() if name not in ("ts", "duration_ms")}

    with production_loggers():
        direct = one_line()
        other = _Collect()
        logger = logging.getLogger(attach_to)
        logger.addHandler(other)
        try:
            through_logging = one_line()
        finally:
            logger.removeHandler(other)
        again = one_line()
    assert through_logging == direct
    assert direct["request_id"].startswith("sk-r…[redacted]")
    assert direct["message"] == "GET /v1/balance 200"
    assert other.messages == ["GET /v1/balance 200"]
    assert again == direct  # and directly again once the other handler is gone


def test_a_filter_on_the_access_logger_still_decides_what_is_written(log_client, create_token, auth, capsys):
    key = create_token(remain_quota=5)
    access = logging.getLogger("balance_service.access")
    dropping = logging.Filter("nothing.matches.this")
    with production_loggers():
        access.addFilter(dropping)
        try:
            assert log_client.get("/v1/balance", headers=auth(key)).status_code == 200
            assert access_lines(capsys) == []
        finally:
            access.removeFilter(dropping)
        assert log_client.get("/v1/balance", headers=auth(key)).status_code == 200
        assert len(access_lines(capsys)) == 1
