"""Every failure is JSON with success=false; database trouble is a 503 that leaks no key."""

import json
import logging

import pytest

from balance_service import create_app


@pytest.mark.backend_independent
def test_unknown_path_is_a_json_404(client):
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.is_json
    assert response.get_json()["success"] is False


@pytest.mark.backend_independent
@pytest.mark.parametrize("path", ["/v1//balance", "/v1/user//balance", "/healthz//"])
def test_a_doubled_slash_is_a_json_404_not_an_html_redirect(client, auth, path):
    response = client.get("/", headers=auth("sk-" + "a" * 48), environ_overrides={"PATH_INFO": path})
    assert response.status_code == 404
    assert response.is_json
    assert response.get_json()["success"] is False


@pytest.mark.backend_independent
def test_wrong_method_is_a_json_405_that_keeps_the_allow_header(client, auth):
    response = client.post("/v1/balance", headers=auth("sk-whatever"))
    assert response.status_code == 405
    assert response.is_json
    assert response.get_json()["success"] is False
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}


@pytest.mark.backend_independent
def test_healthz_answers_without_auth(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"success": True, "status": "ok"}


def test_readyz_is_ready_when_the_database_answers(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ready"


DEAD_DATABASES = {
    "sqlite": "sqlite:////nonexistent-dir/sub/balance.sqlite3",
    "postgresql": "postgresql://postgres@127.0.0.1:1/test",
    "mariadb": "mysql://root@127.0.0.1:1/test",
}


@pytest.mark.parametrize("backend", DEAD_DATABASES)
def test_database_down_gives_503_json_and_the_key_never_reaches_the_log(backend, caplog):
    app = create_app({"TESTING": True, "DATABASE_URL": DEAD_DATABASES[backend]})
    key = "sk-" + "Z9" * 24
    client = app.test_client()
    with caplog.at_level(logging.DEBUG):
        for path in ("/v1/balance", "/v1/user/balance"):
            response = client.get(path, headers={"Authorization": f"Bearer {key}"})
            assert response.status_code == 503
            assert response.get_json() == {
                "success": False,
                "message": "Failed to get used quota",
            }
        ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["success"] is False
    assert "database error" in caplog.text
    assert key[3:] not in caplog.text
    assert key[3:11] not in caplog.text


@pytest.mark.parametrize("backend", DEAD_DATABASES)
def test_a_database_error_is_logged_as_a_json_line_with_the_request_id(backend, capsys):
    app = create_app({"TESTING": True, "DATABASE_URL": DEAD_DATABASES[backend]})
    key = "sk-" + "Z9" * 24
    capsys.readouterr()
    headers = {"Authorization": f"Bearer {key}", "X-Request-ID": "outage-check-1"}
    assert app.test_client().get("/v1/balance", headers=headers).status_code == 503
    output = capsys.readouterr().err
    lines = [json.loads(line) for line in output.splitlines()]  # every line is one JSON object
    [error] = [line for line in lines if line["logger"] == "balance_service.errors"]
    assert error["level"] == "ERROR"
    assert error["message"].startswith("database error: ")
    assert error["ts"].endswith("+00:00")
    # Every line written while answering the request carries its id: the error's and the access line.
    assert [line["request_id"] for line in lines] == ["outage-check-1"] * len(lines)
    assert len(lines) == 2
    assert key[3:11] not in output


def test_missing_tables_give_503_not_500(tmp_path, auth):
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path}/empty.db"})
    response = app.test_client().get("/v1/balance", headers=auth("sk-" + "a" * 48))
    assert response.status_code == 503
    assert response.is_json


@pytest.mark.backend_independent
def test_unexpected_errors_are_json_500_without_the_traceback(app, caplog):
    @app.get("/boom")
    def boom():
        raise RuntimeError("sk-" + "Q" * 48)

    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.get_json() == {"success": False, "message": "Internal server error"}
    # Logged, with the exception, but with the key masked down to its first 4 characters.
    assert "unhandled error" in caplog.text
    assert "RuntimeError" in caplog.text
    assert "sk-Q…[redacted]" in caplog.text
    assert "Q" * 48 not in caplog.text
