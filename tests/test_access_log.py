"""One JSON line per request on stderr (logger balance_service.access), never carrying a key."""

from __future__ import annotations

import json

import pytest

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
