"""A private ``redis-server`` for tests that need what the shared one (127.0.0.1:6379) does not have.

A password for the default user, an ACL user with a password of its own, a
unix socket and, on request, a TLS port with a certificate made for the test.
It listens on free loopback ports only and is stopped when the block ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from balance_service.config import redis_target
from balance_service.redis_client import RedisClient, RedisError
from tests.helpers import self_signed_certificate

PASSWORD = "default-user-password"
USER, USER_PASSWORD = "limiter", "limiter-password"


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
    client = RedisClient(redis_target(f"redis+unix://:{PASSWORD}@{server.unix_socket}"), timeout=1)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                return client.call("PING") == b"PONG"
            except RedisError:
                time.sleep(0.02)
        return False
    finally:
        client.close()
