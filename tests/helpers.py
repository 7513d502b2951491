"""Helpers shared by test modules (conftest.py holds only fixtures; modules import from here).

- Throw-away PostgreSQL and MariaDB databases, skipped when the server is down
  (failed under ``CI=true``) and failed on any other connection error.
- Environments for child processes without the developer's own settings.
- A real gunicorn on a port the kernel picked, read back from gunicorn's log,
  so no other process can take the port between choosing and binding it.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg2
import pymysql
import pytest
from sqlalchemy.engine import make_url

from balance_service.config import ENV_SETTINGS, REMOVED

REPO = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get("TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")

#: What gunicorn itself reads from the environment (the service's own settings are ENV_SETTINGS).
GUNICORN_SETTINGS = ("WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS", "GUNICORN_CMD_ARGS")


# --- throw-away databases ------------------------------------------------------


def _reachable(host: str, port: int) -> OSError | None:
    """None when something accepts TCP connections at ``host:port``, else the error (refused, timeout)."""
    try:
        with socket.create_connection((host, port), timeout=3):
            return None
    except OSError as e:
        return e


def postgres_admin_connection():
    """A connection to the PostgreSQL test server's ``postgres`` database, to create and drop databases."""
    url = make_url(POSTGRES_URL)
    conn = psycopg2.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname="postgres",
        connect_timeout=3,
    )
    conn.autocommit = True
    return conn


def mariadb_admin_connection(database: str | None = None) -> pymysql.Connection:
    """A connection as the MariaDB test user, to create and drop databases (or seed one)."""
    url = make_url(MARIADB_URL)
    return pymysql.connect(
        host=url.host,
        port=url.port or 3306,
        user=url.username,
        password=url.password or "",
        database=database,
        charset="utf8mb4",
        connect_timeout=3,
        autocommit=True,
    )


@contextmanager
def _temporary_database(
    server: str, base_url: str, default_port: int, connect: Callable[[], Any], create: str, drop: str
) -> Iterator[str]:
    """Create a database of our own on ``server`` and drop it afterwards; yields its URL.

    Skips only when nothing answers at the server's address (connection
    refused, timeout), and even then fails under ``CI=true``: CI must exercise
    every backend. A server that answers but refuses us (authentication,
    permissions) is a broken set-up, so that error fails the test.
    """
    url = make_url(base_url)
    error = _reachable(url.host or "localhost", url.port or default_port)
    if error is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{server} must be reachable in CI: {error}")
        pytest.skip(f"{server} not reachable at {base_url}: {error}")
    admin = connect()
    name = f"balance_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.cursor() as cur:
            cur.execute(create.format(name=name))
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.cursor() as cur:
                cur.execute(drop.format(name=name))
    finally:
        admin.close()


def temporary_postgres_database():
    """A throw-away PostgreSQL database (a context manager yielding its URL)."""
    return _temporary_database(
        "PostgreSQL",
        POSTGRES_URL,
        5432,
        postgres_admin_connection,
        'CREATE DATABASE "{name}"',
        'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
    )


def temporary_mariadb_database():
    """A throw-away MariaDB database with the server's default collation (``utf8mb4_general_ci``,
    case-insensitive), as a gateway's database would have, so the tests see what production sees."""
    return _temporary_database(
        "MariaDB",
        MARIADB_URL,
        3306,
        mariadb_admin_connection,
        "CREATE DATABASE `{name}` CHARACTER SET utf8mb4",
        "DROP DATABASE IF EXISTS `{name}`",
    )


# --- child processes -----------------------------------------------------------


def self_signed_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """A one-day certificate and its key for ``name`` (an IP address or a host name), made with ``openssl``."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    kind = "IP" if re.fullmatch(r"[0-9.]+|[0-9a-fA-F:]+", name) else "DNS"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}"]
        + ["-addext", f"subjectAltName={kind}:{name}", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


def clean_environment(**settings: str) -> dict[str, str]:
    """``os.environ`` without any setting of the service or of gunicorn, plus ``settings``.

    A developer's own ``DATABASE_URL``, ``BIND`` or ``LOG_LEVEL`` must not
    change what a server started by a test does.
    """
    dropped = {*ENV_SETTINGS, *REMOVED, *GUNICORN_SETTINGS}
    env = {name: value for name, value in os.environ.items() if name not in dropped}
    env.update(settings)
    return env


@contextmanager
def serving(server: socketserver.BaseServer) -> Iterator[None]:
    """Serve ``server`` (a loopback test server) from a thread of its own for the block; shut and closed after it."""
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def flask_cli(env: dict[str, str], *args: str) -> str:
    """Run ``flask --app wsgi *args`` in the checkout with ``env`` (from :func:`clean_environment`); its output."""
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def last_line_printed(script: str, timeout: float = 120) -> str:
    """Run ``script`` in a fresh Python process in the checkout (a clean environment); the last line it printed."""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=clean_environment(),
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.rstrip("\n").rsplit("\n", 1)[-1]


def created_key(output: str) -> str:
    """The key ``create-token`` printed."""
    return re.search(r"^sk-\w{48}$", output, re.M).group(0)


_LISTENING = re.compile(rb"Listening at: http://127\.0\.0\.1:(\d+)")


def _listening_port(log: Path, offset: int, process: subprocess.Popen, timeout: float) -> int:
    """The port gunicorn reports in ``log`` (written after ``offset``), once it has bound it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with log.open("rb") as f:
            f.seek(offset)
            match = _LISTENING.search(f.read())
        if match:
            return int(match.group(1))
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"gunicorn did not start:\n{log.read_text(errors='replace')}")


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM (gunicorn's graceful stop), and SIGKILL if it is still there after ``timeout`` seconds."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def running_gunicorn(
    env: dict[str, str], log: Path, *args: str, command: list[str] | None = None, cwd: Path = REPO
) -> Iterator[tuple[str, subprocess.Popen]]:
    """gunicorn with the project's gunicorn.conf.py on a kernel-chosen loopback port; yields (base URL, process).

    ``env`` comes from :func:`clean_environment`; ``BIND`` is set here. The
    output is appended to ``log``; only what this run writes is searched for
    the port, so one log can serve several runs. ``command`` replaces the
    whole command line (an installed gunicorn, ``balance-service serve``).
    """
    offset = log.stat().st_size if log.exists() else 0
    command = command or [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", *args, "wsgi:app"]
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, cwd=cwd, env={**env, "BIND": "127.0.0.1:0"}, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        port = _listening_port(log, offset, process, timeout=30)
        yield f"http://127.0.0.1:{port}", process
    finally:
        stop(process)


def run_concurrently(targets: list[Callable[[], object]], timeout: float = 120) -> None:
    """Run each target in a thread of its own, all released at once; fail on any thread's exception."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(targets))

    def wrap(target: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            try:
                start.wait()
                target()
            except BaseException as e:  # noqa: BLE001 - reported by the assertion below
                errors.append(e)

        return run

    threads = [threading.Thread(target=wrap(t)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads), "a thread did not finish"
    assert not errors, errors


@contextmanager
def recording_receiver() -> Iterator[tuple[str, list[dict]]]:
    """A webhook receiver on a free loopback port that answers 204; yields (URL, JSON bodies received)."""
    import json
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with serving(server):
        yield f"http://127.0.0.1:{server.server_port}/hook", received
