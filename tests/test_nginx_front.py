"""``deploy/nginx.conf`` in front of a real gunicorn: slow clients no longer freeze the service.

gunicorn's sync workers read a request with no timeout of their own, so a
client that trickles its headers holds a worker until gunicorn kills it (30 s).
The tests run Debian's nginx as a plain process (its own prefix, pid, logs and
temporary directories under tmp_path; the shipped file with loopback ports
substituted) and a bounded slowloris: 20 connections each sending one header
line every 0.5 s for a few seconds. Every refusal nginx makes (a malformed
chunked body included) and every answer gunicorn makes itself to a request
nginx lets through reaches the client as the API's JSON with CORS headers,
while the app's own errors (its 400s too) pass through exactly as it wrote them. Without ``/usr/sbin/nginx`` they skip,
except under ``CI=true`` where that is a failure (``.ci/run`` installs it).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import REPO, clean_environment, created_key, flask_cli, running_gunicorn, stop

pytestmark = pytest.mark.e2e

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SHIPPED = REPO / "deploy" / "nginx.conf"
SLOW_CONNECTIONS = 20
WORKERS = "2"


def _require_nginx() -> None:
    if os.path.exists(NGINX):
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"nginx must be installed in CI ({NGINX} is missing): apt-get install nginx")
    pytest.skip("nginx is not installed (apt-get install nginx)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _replace_once(text: str, old: str, new: str) -> str:
    """The shipped file must still contain ``old`` exactly once, or this test no longer tests it."""
    assert text.count(old) == 1, f"deploy/nginx.conf no longer has {old!r} exactly once"
    return text.replace(old, new)


def render_config(upstream_port: int, listen_port: int, tmp: Path, read_timeout: str | None = None) -> str:
    """The shipped configuration with loopback ports and every path inside ``tmp``.

    ``read_timeout`` replaces ``proxy_read_timeout`` (35 s) so that a test of a frozen upstream stays short.
    """
    text = SHIPPED.read_text()
    if read_timeout is not None:
        text = _replace_once(text, "proxy_read_timeout 35s;", f"proxy_read_timeout {read_timeout};")
    # The user directive only means something to a master process started as root.
    text = _replace_once(text, "user www-data;\n", "user www-data;\n" if os.geteuid() == 0 else "")
    text = _replace_once(text, "pid /run/nginx.pid;", f"pid {tmp}/nginx.pid;")
    text = _replace_once(text, "error_log /var/log/nginx/error.log warn;", f"error_log {tmp}/error.log warn;")
    text = _replace_once(text, "access_log /var/log/nginx/access.log;", f"access_log {tmp}/access.log;")
    text = _replace_once(text, "server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};")
    text = _replace_once(text, "listen 80;", f"listen 127.0.0.1:{listen_port};")
    text = _replace_once(text, "listen [::]:80;\n", "")
    temp_paths = "".join(
        f"    {kind}_temp_path {tmp}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return _replace_once(text, "http {\n", "http {\n" + temp_paths)


def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def running_nginx(upstream: str, tmp: Path, read_timeout: str | None = None) -> Iterator[str]:
    """nginx in the foreground with the rendered configuration; yields its base URL."""
    _require_nginx()
    upstream_port = int(upstream.rsplit(":", 1)[1])
    port = _free_port()
    config = tmp / "nginx.conf"
    config.write_text(render_config(upstream_port, port, tmp, read_timeout))
    checked = subprocess.run(
        [NGINX, "-t", "-p", str(tmp), "-e", "stderr", "-c", str(config)], capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stderr
    log = tmp / "nginx.out"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [NGINX, "-p", str(tmp), "-e", "stderr", "-c", str(config), "-g", "daemon off;"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 15
        while not _accepting(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("nginx did not start:\n" + log.read_text(errors="replace"))
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process, timeout=10)


@pytest.fixture
def gunicorn(tmp_path) -> Iterator[str]:
    """The project's gunicorn (sync workers, as in production) with two workers, on SQLite."""
    env = clean_environment(
        DATABASE_URL=f"sqlite:///{tmp_path / 'front.sqlite3'}", WEB_CONCURRENCY=WORKERS, PROXY_FIX_X_FOR="1"
    )
    with running_gunicorn(env, tmp_path / "gunicorn.log") as (url, _):
        deadline = time.monotonic() + 30
        while True:
            try:
                if get(url, "/healthz", timeout=2)[0] == 200:
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)
        yield url


def get(base: str, path: str, timeout: float, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.headers), response.read()
    finally:
        connection.close()


def timed_get(base: str, path: str, timeout: float) -> float | None:
    """Seconds until ``path`` was answered with 200, or None if no answer came within ``timeout``."""
    started = time.monotonic()
    try:
        status, _, _ = get(base, path, timeout)
    except (TimeoutError, OSError):
        return None
    assert status == 200
    return time.monotonic() - started


@contextmanager
def slowloris(base: str, seconds: float, interval: float = 0.5) -> Iterator[list[bool]]:
    """``SLOW_CONNECTIONS`` connections that send a request header one line every ``interval`` seconds.

    Bounded: it stops after ``seconds`` (or when the block ends) and closes
    every socket. Yields a list that says, per connection, whether the server
    closed it before the trickle ended.
    """
    host, port = base.removeprefix("http://").split(":")
    sockets = [socket.create_connection((host, int(port)), timeout=5) for _ in range(SLOW_CONNECTIONS)]
    dropped = [False] * len(sockets)
    done = threading.Event()

    def trickle() -> None:
        for s in sockets:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: front\r\n")
        deadline = time.monotonic() + seconds
        line = 0
        while not done.wait(interval) and time.monotonic() < deadline:
            line += 1
            for i, s in enumerate(sockets):
                if dropped[i]:
                    continue
                try:
                    s.sendall(f"X-Slow-{line}: {'a' * 8}\r\n".encode())
                except OSError:
                    dropped[i] = True

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    time.sleep(0.5)  # every connection has reached the server and sent its first line
    try:
        yield dropped
    finally:
        done.set()
        thread.join(timeout=seconds + 5)
        for s in sockets:
            s.close()


def test_a_slowloris_stalls_bare_gunicorn(gunicorn):
    """Without the front, 20 trickling connections leave no worker for anyone else.

    This is the failure the front fixes, shown on the same gunicorn the next
    test puts nginx in front of.
    """
    assert timed_get(gunicorn, "/healthz", timeout=2) is not None
    with slowloris(gunicorn, seconds=4):
        assert timed_get(gunicorn, "/healthz", timeout=2) is None
    # Once the slow clients give up, the workers are free again.
    assert timed_get(gunicorn, "/healthz", timeout=5) is not None


def test_behind_nginx_a_slowloris_does_not_delay_normal_requests(gunicorn, tmp_path):
    with running_nginx(gunicorn, tmp_path) as front:
        with slowloris(front, seconds=7) as dropped:
            answered = []
            for _ in range(8):
                answered.append(timed_get(front, "/healthz", timeout=5))
                time.sleep(0.25)
            assert all(t is not None and t < 1 for t in answered), answered
            # client_header_timeout (5 s) ends the slow connections themselves.
            time.sleep(6)
            assert all(dropped), f"{dropped.count(False)} slow connections still open after the header timeout"
        assert timed_get(front, "/healthz", timeout=5) < 1


def test_nginx_passes_the_client_address_and_answers_its_refusals_in_json(gunicorn, tmp_path):
    with running_nginx(gunicorn, tmp_path) as front:
        host, port = front.removeprefix("http://").split(":")
        # A forged X-Forwarded-For is replaced, so the app sees the real client (PROXY_FIX_X_FOR=1).
        status, _, body = get(front, "/v1/balance", 5, {"X-Forwarded-For": "203.0.113.9"})
        assert status == 401 and json.loads(body)["success"] is False

        # A body over the app's 16 KiB limit is refused by nginx before gunicorn reads it.
        connection = http.client.HTTPConnection(host, int(port), timeout=5)
        connection.request("POST", "/v1/user/balance/alerts", body=b"{" + b" " * 17000 + b"}")
        response = connection.getresponse()
        assert response.status == 413
        assert response.getheader("Content-Type") == "application/json"
        assert json.loads(response.read()) == {"success": False, "message": "Request body too large"}
        connection.close()

        status, _, body = get(front, "/metrics", 5)
        assert status == 404 and json.loads(body)["success"] is False

    access = (tmp_path / "gunicorn.log").read_text()
    lines = [json.loads(line) for line in access.splitlines() if line.startswith("{")]
    [line] = [line for line in lines if line.get("path") == "/v1/balance"]
    assert line["remote_addr"] == "127.0.0.1"


def test_nginx_answers_503_in_json_when_gunicorn_is_down(tmp_path):
    with running_nginx(f"http://127.0.0.1:{_free_port()}", tmp_path) as front:
        status, headers, body = get(front, "/v1/balance", 5)
    assert status == 503
    assert headers["Content-Type"] == "application/json"
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Retry-After"] == "1"
    assert json.loads(body) == {"success": False, "message": "Service unavailable, retry shortly"}


@contextmanager
def frozen_upstream() -> Iterator[str]:
    """A loopback server that accepts connections and never answers (a gunicorn stuck); yields its URL."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not done.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        done.set()
        thread.join(timeout=5)
        for connection in held:
            connection.close()
        server.close()


def test_nginx_answers_504_in_json_when_gunicorn_does_not_answer(tmp_path):
    # proxy_read_timeout is 35 s in the shipped file; 1 s here keeps the test short.
    with frozen_upstream() as upstream, running_nginx(upstream, tmp_path, read_timeout="1s") as front:
        status, headers, body = get(front, "/v1/balance", 10, {"Origin": "https://dashboard.example"})
    assert status == 504
    assert headers["Content-Type"] == "application/json"
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert json.loads(body) == {"success": False, "message": "The service did not answer in time"}


def raw_request(base: str, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` as it is (http.client would refuse to write most of these) and read the whole answer."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(data)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def _request(line: bytes, *headers: bytes) -> bytes:
    return line + b"\r\nHost: front\r\n" + b"".join(h + b"\r\n" for h in headers) + b"Connection: close\r\n\r\n"


#: Requests nginx (or gunicorn behind it) refuses, with the status and message the client must get.
REFUSED = {
    "a URI longer than a header buffer": (_request(b"GET /" + b"a" * 5000 + b" HTTP/1.1"), 414, "Request URI too long"),
    "a header longer than a header buffer": (
        _request(b"GET /healthz HTTP/1.1", b"X-Big: " + b"a" * 5000),
        431,
        "Request headers too large",
    ),
    "a request line that is not HTTP": (b"\x16\x03\x01hello\r\n\r\n", 400, "Bad request"),
    "a lower-case method": (_request(b"get /healthz HTTP/1.1"), 400, "Bad request"),
    # nginx takes these methods; gunicorn would refuse them (3 to 20 capitals only): nginx does, first.
    "a method of 25 letters": (_request(b"ABCDEFGHIJKLMNOPQRSTUVWXY /healthz HTTP/1.1"), 400, "Bad request"),
    "a method of 2 letters": (_request(b"GE /healthz HTTP/1.1"), 400, "Bad request"),
    "HTTP/1.1 without Host": (b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", 400, "Bad request"),
    "a folded header line": (_request(b"GET /healthz HTTP/1.1", b"X-A: 1", b"  2"), 400, "Bad request"),
    # nginx reads the whole body before passing the request on, and refuses it there.
    "a malformed chunked body": (
        _request(b"POST /v1/user/balance/alerts HTTP/1.1", b"Transfer-Encoding: chunked") + b"zz\r\nabc\r\n0\r\n\r\n",
        400,
        "Bad request",
    ),
    "an unknown transfer coding": (
        _request(b"POST /v1/user/balance/alerts HTTP/1.1", b"Transfer-Encoding: gzip"),
        501,
        "Not implemented",
    ),
    "nginx's internal error paths": (_request(b"GET /_errors/500 HTTP/1.1"), 404, "Not found"),
    "the metrics": (_request(b"GET /metrics HTTP/1.1"), 404, "Not found"),
}


def test_nginx_and_gunicorn_refusals_reach_the_client_as_json_a_page_can_read(gunicorn, tmp_path):
    with running_nginx(gunicorn, tmp_path) as front:
        answers = {name: raw_request(front, data) for name, (data, _, _) in REFUSED.items()}
    for name, (_, status, message) in REFUSED.items():
        got_status, headers, body = answers[name]
        assert (got_status, headers.get("content-type")) == (status, "application/json"), (name, body[:200])
        assert json.loads(body) == {"success": False, "message": message}, name
        assert headers["access-control-allow-origin"] == "*", name
        assert "X-Request-ID" in headers["access-control-expose-headers"], name


#: Requests gunicorn itself refuses, before the app runs (nginx passes the first and the last on as they are).
GUNICORN_REFUSED = {
    "a header value with a control character": _request(b"GET /healthz HTTP/1.1", b"X-A: a\x01b"),
    "a lower-case method": _request(b"get /healthz HTTP/1.1"),
    "a key in a request line of an unknown HTTP version": b"GET /v1/balance?sk-" + b"k" * 48 + b" HTTP/9.9\r\n\r\n",
    "more headers than gunicorn takes": _request(b"GET /healthz HTTP/1.1", *(b"X-H%d: 1" % i for i in range(150))),
}


def test_gunicorn_answers_what_it_cannot_parse_in_json_a_page_can_read(gunicorn, tmp_path):
    """gunicorn writes these answers itself (no app code runs): JSON, never the key a bad request line held."""
    answers = {name: raw_request(gunicorn, data) for name, data in GUNICORN_REFUSED.items()}
    with running_nginx(gunicorn, tmp_path) as front:
        for name in ("a header value with a control character", "more headers than gunicorn takes"):
            answers[f"{name}, through nginx"] = raw_request(front, GUNICORN_REFUSED[name])
    for name, (status, headers, body) in answers.items():
        assert 400 <= status < 500 and headers.get("content-type") == "application/json", (name, status, body[:200])
        answer = json.loads(body)
        assert answer["success"] is False and answer["message"], name
        assert headers["access-control-allow-origin"] == "*", name
        assert b"k" * 12 not in body, name


#: The app's own refusals: nginx must pass each on exactly as the app wrote it.
APP_ERRORS = {
    "an unknown path (404)": ("GET", "/v1/nothing-here", {}),
    "a method the path does not take (405, with Allow)": ("PUT", "/v1/balance", {}),
    "no key (401)": ("GET", "/v1/balance", {}),
    # The test's database has no gateway tables, so looking a key up fails: the app's 503.
    "a database error (503)": ("GET", "/v1/usage", {"Authorization": "Bearer sk-" + "a" * 48}),
}


def _app_answer(base: str, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict, bytes]:
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(method, path, headers={"Origin": "https://dashboard.example", **headers})
        response = connection.getresponse()
        return response.status, dict(response.headers), response.read()
    finally:
        connection.close()


def test_the_apps_own_errors_pass_through_nginx_unchanged(gunicorn, tmp_path):
    with running_nginx(gunicorn, tmp_path) as front:
        for name, (method, path, headers) in APP_ERRORS.items():
            direct = _app_answer(gunicorn, method, path, headers)
            proxied = _app_answer(front, method, path, headers)
            assert proxied[0] == direct[0] and proxied[2] == direct[2], name
            assert proxied[1]["Content-Type"] == "application/json", name
            assert "X-Request-ID" in proxied[1], f"{name}: not the app's answer"
            for header in ("Allow", "Access-Control-Allow-Origin", "Retry-After"):
                assert proxied[1].get(header) == direct[1].get(header), (name, header)


def test_the_apps_own_400s_pass_through_nginx_unchanged(tmp_path):
    """nginx turns its own 400s into JSON (a malformed chunked body included) but never the app's: a client reads
    the app's own reason for refusing a request it could authenticate."""
    env = clean_environment(DATABASE_URL=f"sqlite:///{tmp_path / 'keyed.sqlite3'}", WEB_CONCURRENCY="1")
    flask_cli(env, "init-db")
    flask_cli(env, "create-user", "erin", "--quota", "1000000")
    headers = {"Authorization": "Bearer " + created_key(flask_cli(env, "create-token", "erin"))}
    refused = {
        "an unknown scope": "/v1/usage?scope=everything",
        "a date that is not one": "/v1/dashboard/billing/usage?start_date=yesterday&end_date=2026-12-01",
    }
    with running_gunicorn(env, tmp_path / "gunicorn.log") as (upstream, _), running_nginx(upstream, tmp_path) as front:
        for name, path in refused.items():
            direct = _app_answer(upstream, "GET", path, headers)
            proxied = _app_answer(front, "GET", path, headers)
            assert direct[0] == 400 and json.loads(direct[2])["message"] != "Bad request", name
            assert (proxied[0], proxied[2]) == (direct[0], direct[2]), name
            assert "X-Request-ID" in proxied[1], f"{name}: not the app's answer"
