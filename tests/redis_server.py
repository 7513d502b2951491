"""A private ``redis-server`` for tests that need what the shared one (127.0.0.1:6379) does not have.

A password for the default user, an ACL user with a password of its own (and
one that may not run scripts), a unix socket and, on request, a TLS port with a
certificate made for the test. It listens on free loopback ports only and is
stopped when the block ends.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.helpers import self_signed_certificate

PASSWORD = "default-user-password"
USER, USER_PASSWORD = "limiter", "limiter-password"
#: An ACL user that may do anything but run scripts (no +@scripting).
NO_SCRIPTS_USER = "no-scripts"


@dataclass(frozen=True)
class PrivateRedis:
    pid: int
    port: int
    unix_socket: str
    tls_port: int | None
    #: The self-signed certificate of the TLS port (for 127.0.0.1), which is also its own CA.
    certificate: Path | None

    def url(self, db: int = 0, password: str = PASSWORD) -> str:
        return f"redis://:{password}@127.0.0.1:{self.port}/{db}"


def require(*commands: str) -> None:
    """Skip without the commands; under ``CI=true`` fail instead (CI has them all)."""
    missing = [command for command in commands if shutil.which(command) is None]
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{', '.join(missing)} must be installed in CI")
        pytest.skip(f"needs {', '.join(missing)}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_redis(tls: bool = False, timeout: float = 30) -> Iterator[PrivateRedis]:
    """Start the server (again on other ports if one was taken meanwhile); stop it when the block ends."""
    require("redis-server", *(["openssl"] if tls else []))
    # A short directory: a unix socket's path may be at most 107 bytes, and pytest's tmp_path can be longer.
    directory = Path(tempfile.mkdtemp(prefix="redis-"))
    try:
        cert, key = self_signed_certificate(directory, "127.0.0.1") if tls else (None, None)
        for _attempt in range(3):
            port, tls_port, unix_socket = _free_port(), _free_port() if tls else None, str(directory / "redis.sock")
            command = ["redis-server", "--bind", "127.0.0.1", "--port", str(port)]
            command += ["--unixsocket", unix_socket, "--unixsocketperm", "700", "--requirepass", PASSWORD]
            command += ["--user", USER, "on", f">{USER_PASSWORD}", "~*", "+@all"]
            command += ["--user", NO_SCRIPTS_USER, "on", f">{USER_PASSWORD}", "~*", "+@all", "-@scripting"]
            command += ["--save", "", "--appendonly", "no", "--dir", str(directory)]
            command += ["--logfile", str(directory / "redis.log")]
            if tls:
                command += ["--tls-port", str(tls_port), "--tls-auth-clients", "no"]
                command += ["--tls-cert-file", str(cert), "--tls-key-file", str(key)]
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            server = PrivateRedis(process.pid, port, unix_socket, tls_port, cert)
            try:
                if _answers(server, process, timeout):
                    yield server
                    return
            finally:
                process.send_signal(signal.SIGCONT)  # in case a test stopped it
                process.terminate()
                process.wait(timeout=30)
        raise AssertionError(f"redis-server did not start:\n{(directory / 'redis.log').read_text(errors='replace')}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _answers(server: PrivateRedis, process: subprocess.Popen, timeout: float) -> bool:
    """Whether the server answers; False if it exited first (a port was taken).

    Asked on its unix socket, which no other server can have: it is made after the ports are bound.
    """
    client = redis.Redis(unix_socket_path=server.unix_socket, password=PASSWORD, socket_timeout=1, retry=None)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                return client.ping()
            except redis.RedisError:
                time.sleep(0.02)
        return False
    finally:
        client.close()


@dataclass
class FakeRedis:
    """A loopback server that reads Redis commands and answers them as a test says (see :func:`fake_redis`)."""

    port: int
    #: Every command received, in order, each as a list of its parts (bytes).
    commands: list[list[bytes]]
    #: Connections accepted so far.
    connections: int = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def _read_command(stream) -> list[bytes] | None:
    """One command (a RESP array of bulk strings) from a client, None once it hangs up."""
    header = stream.readline()
    if not header.startswith(b"*"):
        return None
    parts = []
    for _ in range(int(header[1:])):
        size = int(stream.readline()[1:])
        parts.append(stream.read(size + 2)[:size])
    return parts


@contextmanager
def fake_redis(answer: Callable[[list[bytes], int], list[bytes]]) -> Iterator[FakeRedis]:
    """Serve ``answer(command, n)`` for the n-th command (from 0): the chunks sent back, each on its own.

    ``SCRIPT LOAD`` (the limiter's start-up check) is answered as Redis would
    and not passed to ``answer``. A chunk ``b""`` is a pause of 30 ms, so a test can trickle a reply.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    server = FakeRedis(listener.getsockname()[1], [])
    done = threading.Event()

    def serve(connection: socket.socket) -> None:
        with connection, connection.makefile("rb") as stream:
            while not done.is_set():
                try:
                    command = _read_command(stream)
                except OSError:
                    return
                if command is None:
                    return
                if command[:2] == [b"SCRIPT", b"LOAD"]:
                    chunks = [b"$40\r\n" + hashlib.sha1(command[2]).hexdigest().encode() + b"\r\n"]
                else:
                    server.commands.append(command)
                    chunks = answer(command, len(server.commands) - 1)
                try:
                    for chunk in chunks:
                        if chunk:
                            connection.sendall(chunk)
                        else:
                            time.sleep(0.03)
                except OSError:
                    return

    def accept() -> None:
        while not done.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            server.connections += 1
            threading.Thread(target=serve, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        done.set()
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() in progress
        listener.close()
        thread.join(timeout=5)
