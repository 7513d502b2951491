"""Private PostgreSQL and MariaDB servers: their own data directory, socket and loopback port, started by the caller.

Tests (and bench/soak.py) that stop, freeze (SIGSTOP) or restart a database
must not do it to the machine's shared servers, which other test suites use
at the same time. Each server here is a plain process of its own in a
temporary directory, removed when the block ends. When we are root, the
servers run as their usual system users (initdb refuses root; mariadbd is
told ``--user=mysql``). A server that cannot run here (no binary, no such
user) raises :class:`Unavailable`, which fixtures turn into a skip
(:func:`serve_or_skip`; a failure under ``CI=true``).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import TypeVar

import pymysql
import pytest

T = TypeVar("T")


class Unavailable(Exception):
    """The server cannot run here (binary or system user missing)."""


def serve_or_skip(running: Callable[[], AbstractContextManager[T]]) -> Iterator[T]:
    """For a fixture: yield the server ``running()`` starts, or skip when it cannot run here (fail under CI=true)."""
    try:
        with running() as server:
            yield server
    except Unavailable as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"a private server must run in CI: {e}")
        pytest.skip(str(e))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (a postmaster's backends and helpers)."""
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            raw = Path(stat).read_text()
        except OSError:
            continue  # it exited meanwhile
        if int(raw[raw.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(stat.split("/")[2]))
    return found


@contextmanager
def frozen(pids: Iterable[int]) -> Iterator[None]:
    """The processes stopped (SIGSTOP) for the block, as a hung or swapped-out server: the kernel still accepts
    and acknowledges TCP for them, nothing answers. Continued (SIGCONT) when the block ends."""
    pids = list(pids)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        _wait_until_stopped(pids)
        yield
    finally:
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def _wait_until_stopped(pids: list[int], timeout: float = 10) -> None:
    """Until every thread of ``pids`` is stopped: ``kill`` returns before a thread running on another
    core has taken the signal, and such a thread may still answer a query meanwhile."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        for stat in glob.glob(f"/proc/{pid}/task/*/stat"):
            while True:
                try:
                    raw = Path(stat).read_text()
                except OSError:
                    break  # the thread ended
                if raw[raw.rindex(")") + 2] in "tTZX":
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"process {pid} did not stop")
                time.sleep(0.001)


class PrivatePostgres:
    """One PostgreSQL cluster of our own, driven with pg_ctl (as the ``postgres`` user when we are root)."""

    def __init__(self, bindir: Path, root: Path, as_postgres: bool) -> None:
        self.bindir, self.root = bindir, root
        self.data, self.log = root / "data", root / "server.log"
        self.port = free_port()
        self.prefix = ["runuser", "-u", "postgres", "--"] if as_postgres else []

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run([*self.prefix, *args], check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def start_on_a_free_port(self, attempts: int = 5) -> None:
        """Start, on another free port whenever the one picked was taken before the server bound it.

        The port is picked by binding port 0 and closing the socket, so another
        process on this busy machine may take it first; URLs are only built
        after this, so moving to a new port changes nothing for the caller.
        """
        for attempt in range(attempts):
            logged = self.log.stat().st_size if self.log.exists() else 0
            try:
                self.start()
                return
            except subprocess.CalledProcessError:
                taken = b"Address already in use" in self.log.read_bytes()[logged:]
                if not taken or attempt == attempts - 1:
                    raise
                self.port = free_port()

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().splitlines()[0])

    def pids(self) -> list[int]:
        """The postmaster and every process it started (backends, checkpointer, …): all of the server."""
        postmaster = self.postmaster_pid()
        return [postmaster, *children(postmaster)]


@contextmanager
def running_postgres() -> Iterator[PrivatePostgres]:
    """A new cluster (the newest installed PostgreSQL) on a free port; stopped and removed when the block ends."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not candidates:
        raise Unavailable("no /usr/lib/postgresql/*/bin/initdb")
    as_postgres = os.geteuid() == 0  # initdb refuses to run as root
    if as_postgres and not shutil.which("runuser"):
        raise Unavailable("running as root without runuser to become the postgres user")
    root = Path(tempfile.mkdtemp(prefix="balance-pg-"))
    try:
        if as_postgres:
            try:
                shutil.chown(root, user="postgres")
            except LookupError:
                raise Unavailable("no postgres OS user") from None
        server = PrivatePostgres(Path(candidates[-1]).parent, root, as_postgres)
        server.init()
        server.start_on_a_free_port()
        try:
            yield server
        finally:
            if server.running():
                try:
                    for pid in server.pids():
                        os.kill(pid, signal.SIGCONT)  # in case the caller froze it
                    server.stop()
                except (OSError, subprocess.SubprocessError):
                    pass
    finally:
        shutil.rmtree(root, ignore_errors=True)


MARIADB_SERVER = "/usr/sbin/mariadbd"


class PrivateMariaDB:
    """One MariaDB server of our own (``mariadbd`` as a plain child process); ``root`` without a password."""

    def __init__(self, root: Path, as_mysql: bool) -> None:
        self.root, self.data = root, root / "data"
        self.socket, self.log = root / "mysqld.sock", root / "server.log"
        self.user = ["--user=mysql"] if as_mysql else []
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def url(self, database: str = "test") -> str:
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{database}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def init(self) -> None:
        command = ["mariadb-install-db", "--no-defaults", f"--datadir={self.data}", *self.user]
        command += ["--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve"]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self, timeout: float = 60) -> None:
        """Start, on another free port whenever the one picked was taken before the server bound it."""
        for _attempt in range(5):
            command = [MARIADB_SERVER, "--no-defaults", f"--datadir={self.data}", f"--socket={self.socket}"]
            command += [f"--port={self.port}", "--bind-address=127.0.0.1", "--skip-name-resolve", "--skip-log-bin"]
            command += ["--innodb-buffer-pool-size=16M", "--innodb-flush-log-at-trx-commit=0", "--max-connections=50"]
            command += [f"--pid-file={self.root / 'mysqld.pid'}", f"--log-error={self.log}", *self.user]
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + timeout
            while self.process.poll() is None and time.monotonic() < deadline:
                try:
                    with self.admin() as conn, conn.cursor() as cur:
                        cur.execute("CREATE DATABASE IF NOT EXISTS test CHARACTER SET utf8mb4")
                    return
                except pymysql.err.OperationalError:
                    time.sleep(0.1)
            if self.process.poll() is None:
                self.stop()
                raise AssertionError(f"mariadbd did not answer in {timeout} s:\n{self.log.read_text()[-3000:]}")
            self.port = free_port()  # it exited: the port was taken, most likely
        raise AssertionError(f"mariadbd did not start:\n{self.log.read_text()[-3000:]}")

    def admin(self, database: str | None = None) -> pymysql.Connection:
        return pymysql.connect(
            host="127.0.0.1", port=self.port, user="root", database=database, connect_timeout=2, autocommit=True
        )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGCONT)  # in case the caller froze it
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextmanager
def running_mariadb() -> Iterator[PrivateMariaDB]:
    """A new MariaDB data directory and server on a free port, with an empty ``test`` database; removed afterwards."""
    if not (os.access(MARIADB_SERVER, os.X_OK) and shutil.which("mariadb-install-db")):
        raise Unavailable(f"needs {MARIADB_SERVER} and mariadb-install-db (Debian's mariadb-server)")
    as_mysql = os.geteuid() == 0  # mariadbd refuses to run as root unless told which user to become
    root = Path(tempfile.mkdtemp(prefix="balance-mariadb-"))
    try:
        if as_mysql:
            try:
                shutil.chown(root, user="mysql")
            except LookupError:
                raise Unavailable("no mysql OS user") from None
        server = PrivateMariaDB(root, as_mysql)
        server.init()
        try:
            server.start()
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
