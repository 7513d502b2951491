"""A private ClickHouse server for the tests (and bench/usage_clickhouse.py), and new-api's ``logs`` table in it.

Debian's ``clickhouse-server`` (18.16 in CI) runs as an unprivileged process
from a minimal config written to a temporary directory: loopback only, on a
free port, data in that directory, and two users: ``default`` (no password,
full rights: the tests make and fill tables with it) and ``reader`` (a
``readonly = 2`` profile, as the docs advise for the service; the apps under
test connect as it, so any write would fail). Without the binary the tests
skip, except under ``CI=true`` where that is a failure (``.ci/run`` installs
the package).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from clickhouse_driver import Client

from tests.gateway_logs import GatewayTables, Log

SERVER = shutil.which("clickhouse-server") or "/usr/bin/clickhouse-server"
READER_PASSWORD = "reader-secret"

_USERS = f"""<yandex>
  <profiles>
    <default><max_memory_usage>4000000000</max_memory_usage></default>
    <read_only><readonly>2</readonly></read_only>
  </profiles>
  <users>
    <default><password></password><networks><ip>127.0.0.1</ip></networks>
      <profile>default</profile><quota>default</quota></default>
    <reader><password>{READER_PASSWORD}</password><networks><ip>127.0.0.1</ip></networks>
      <profile>read_only</profile><quota>default</quota></reader>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
"""

# new-api's CREATE TABLE for ClickHouse (model/main.go): Go ints as Int32/Int64, strings with '' defaults,
# a MergeTree partitioned by month of created_at and sorted by (created_at, request_id). new-api appends a
# TTL clause when LOG_SQL_CLICKHOUSE_TTL_DAYS > 0; ClickHouse 18.16 has no TTL, and it does not change reads.
_NEW_API_COLUMNS = [
    ("id", "Int64 DEFAULT 0"),
    ("user_id", "Int32 DEFAULT 0"),
    ("created_at", "Int64 DEFAULT 0"),
    ("type", "Int32 DEFAULT 0"),
    ("content", "String DEFAULT ''"),
    ("username", "String DEFAULT ''"),
    ("token_name", "String DEFAULT ''"),
    ("model_name", "String DEFAULT ''"),
    ("quota", "Int32 DEFAULT 0"),
    ("prompt_tokens", "Int32 DEFAULT 0"),
    ("completion_tokens", "Int32 DEFAULT 0"),
    ("use_time", "Int32 DEFAULT 0"),
    ("is_stream", "UInt8 DEFAULT 0"),
    ("channel_id", "Int32 DEFAULT 0"),
    ("token_id", "Int32 DEFAULT 0"),
    ("`group`", "String DEFAULT ''"),
    ("ip", "String DEFAULT ''"),
    ("request_id", "String DEFAULT ''"),
    ("upstream_request_id", "String DEFAULT ''"),
    ("other", "String DEFAULT ''"),
]


def clickhouse_logs_ddl(flavour: str = "new-api", table: str = "logs") -> str:
    """CREATE TABLE ``logs`` as new-api makes it in ClickHouse; ``one-api``: the same without ``token_id``.

    one-api writes no ClickHouse logs; its layout here checks that a table without ``token_id`` is read the
    one-api way (a key's rows by owner and name), as on the SQL backends.
    """
    columns = [c for c in _NEW_API_COLUMNS if flavour == "new-api" or c[0] != "token_id"]
    return (
        f"CREATE TABLE {table} ({', '.join(f'{name} {kind}' for name, kind in columns)}) "
        "ENGINE = MergeTree() PARTITION BY toYYYYMM(toDateTime(created_at)) ORDER BY (created_at, request_id)"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(directory: Path, tcp_port: int) -> str:
    data = directory / "data"
    return f"""<yandex>
  <logger><level>warning</level><console>1</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>{tcp_port}</tcp_port>
  <path>{data}/</path>
  <tmp_path>{data}/tmp/</tmp_path>
  <user_files_path>{data}/user_files/</user_files_path>
  <format_schema_path>{data}/format_schemas/</format_schema_path>
  <users_config>{directory / "users.xml"}</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
</yandex>
"""


def require_server() -> None:
    """Skip without the ``clickhouse-server`` binary; under ``CI=true`` fail instead."""
    import pytest  # here, so that bench/ can start a server with the runtime requirements alone

    if not os.access(SERVER, os.X_OK):
        if os.environ.get("CI") == "true":
            pytest.fail(f"clickhouse-server must be installed in CI ({SERVER} not found); .ci/run installs it")
        pytest.skip("clickhouse-server is not installed (apt-get install clickhouse-server)")


@contextmanager
def running_clickhouse(directory: Path, timeout: float = 60) -> Iterator[str]:
    """A ClickHouse server on a free loopback port, data in ``directory``; yields ``clickhouse://…:port``.

    Stopped with SIGTERM (SIGKILL after 30 s) when the block ends. A port taken between choosing and binding
    makes the server exit; it is then started again on another port.
    """
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / "server.log"
    for _attempt in range(3):
        port = free_port()
        config = directory / "config.xml"
        config.write_text(_config(directory, port))
        (directory / "users.xml").write_text(_USERS)
        with log.open("ab") as out:
            process = subprocess.Popen(
                [SERVER, f"--config-file={config}"], cwd=directory, stdout=out, stderr=subprocess.STDOUT
            )
        url = f"clickhouse://default@127.0.0.1:{port}/default"
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            try:  # the port first (the driver logs every refused connection), then a query
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                probe = Client.from_url(url + "?connect_timeout=1")
                try:
                    probe.execute("SELECT 1")
                finally:
                    probe.disconnect()
                break
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.1)
        else:
            if process.poll() is None:
                process.kill()
                process.wait()
                raise AssertionError(f"clickhouse-server did not answer in {timeout} s:\n{log.read_text()[-3000:]}")
            continue  # it exited (port taken?): try another port
        try:
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return
    raise AssertionError(f"clickhouse-server did not start:\n{log.read_text()[-3000:]}")


def reader_url(url: str) -> str:
    """The same server and database as ``url`` (user ``default``), as the read-only user ``reader``."""
    return url.replace("clickhouse://default@", f"clickhouse://reader:{READER_PASSWORD}@", 1)


@contextmanager
def temporary_clickhouse_database(server_url: str) -> Iterator[str]:
    """A database of its own on the server, dropped afterwards; yields its URL."""
    name = f"balance_test_{uuid.uuid4().hex[:12]}"
    admin = Client.from_url(server_url)
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield server_url.rsplit("/", 1)[0] + "/" + name
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.disconnect()


@dataclass
class ClickHouseTables:
    """The ``GatewayTables`` interface with ``logs`` in ClickHouse and ``options`` in the main database.

    That is the split new-api makes with ``LOG_SQL_DSN``: only the logs move to ClickHouse.
    """

    url: str
    main: GatewayTables
    flavour: str | None = None

    def __post_init__(self) -> None:
        self.client = Client.from_url(self.url)

    def create_logs(self, flavour: str) -> ClickHouseTables:
        self.flavour = flavour
        self.client.execute(clickhouse_logs_ddl(flavour))
        return self

    def add(self, rows: Iterable[Log]) -> None:
        """Rows as new-api inserts them: ``id`` 0 for all (ids mean nothing there), a request id each."""
        names = ["id", "user_id", "created_at", "type", "quota", "model_name", "token_name", "content", "username"]
        names += ["request_id"] + (["token_id"] if self.flavour == "new-api" else [])
        values = []
        for r in rows:
            row = [0, r.user_id, r.created_at, r.type, r.quota, r.model_name, r.token_name, r.content]
            row += [f"user{r.user_id}", uuid.uuid4().hex] + ([r.token_id] if self.flavour == "new-api" else [])
            values.append(row)
        self.client.execute(f"INSERT INTO logs ({', '.join(names)}) VALUES", values)

    def set_options(self, values: dict[str, str]) -> None:
        self.main.set_options(values)

    def dump(self) -> dict[str, list[tuple]]:
        tables = self.client.execute("SELECT name FROM system.tables WHERE database = currentDatabase()")
        logs = sorted(self.client.execute("SELECT * FROM logs")) if ("logs",) in tables else None
        return {"clickhouse": [("tables", tuple(sorted(tables)))], "logs": logs or [], **self.main.dump()}

    def execute(self, statement: str) -> None:
        self.client.execute(statement)

    def drop(self) -> None:
        self.client.execute("DROP TABLE IF EXISTS logs")
        self.client.disconnect()
        self.main.drop()
