"""Fixtures: the real app on a real SQLite file, on the real PostgreSQL and on the real MariaDB.

Every test that takes ``app`` (or ``client``) runs once per backend, unless it
is marked ``backend_independent``: then it runs on SQLite only. PostgreSQL and
MariaDB tests get a throw-away database created for the session; they skip
when the server is unreachable, except under ``CI=true`` where that is an error.
They are marked ``postgresql`` / ``mariadb``, so ``-m`` can leave them out.
A module marked ``log_stores`` also runs its tests with the gateway's logs in
ClickHouse (``log_store`` = ``clickhouse``, main database SQLite or PostgreSQL):
a private server started for the session (tests/clickhouse.py), marked ``clickhouse``.
A module for one backend says so with
``pytestmark = pytest.mark.parametrize("backend", ["postgresql"])``.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
import uuid
from contextlib import contextmanager, suppress

import pytest
from hypothesis import settings
from sqlalchemy import delete, event

from balance_service import create_app
from balance_service._internal import direct_reads
from balance_service.alerts.models import BalanceAlert
from balance_service.config import ENV_SETTINGS, REMOVED
from balance_service.extensions import db as _db
from balance_service.gateway.tables import Token, User
from balance_service.migrations import init_database
from balance_service.usage.source import CLICKHOUSE_EXTENSION
from tests.alert_receivers import smtp_server
from tests.clickhouse import (
    ClickHouseTables,
    reader_url,
    require_server,
    running_clickhouse,
    temporary_clickhouse_database,
)
from tests.gateway_logs import GatewayTables, seed_november
from tests.helpers import temporary_mariadb_database, temporary_postgres_database

BACKENDS = ["sqlite", "postgresql", "mariadb"]
#: Main databases the ClickHouse log store is combined with in ``log_stores`` modules.
CLICKHOUSE_MAIN_BACKENDS = ["sqlite", "postgresql"]

# Property tests (tests/test_fuzz.py) in CI run repeatably (the same examples
# every run) and keep no example database (.hypothesis/ only holds caches and is
# git-ignored); requests to PostgreSQL may take a while, so no per-example
# deadline. HYPOTHESIS_PROFILE=deep explores instead: new random examples each
# run, ten times as many, and failures kept in .hypothesis/ to be replayed first.
settings.register_profile("balance", derandomize=True, database=None, deadline=None, max_examples=100)
settings.register_profile("deep", derandomize=False, deadline=None, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "balance"))


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    """A developer's own settings (and ones this version no longer reads) must not change what the tests see."""
    for name in (*ENV_SETTINGS, *REMOVED):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def postgres_url():
    with temporary_postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def mariadb_url():
    with temporary_mariadb_database() as url:
        yield url


@pytest.fixture
def empty_mariadb_database():
    """A new, empty MariaDB database for one test that lays out its own tables."""
    with temporary_mariadb_database() as url:
        yield url


def _parametrized_by_the_test(metafunc, name: str) -> bool:
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0]
        if name in ([n.strip() for n in names.split(",")] if isinstance(names, str) else names):
            return True
    return False


def pytest_generate_tests(metafunc):
    """``backend``: every backend, or SQLite alone for a test whose answer cannot depend on the database.

    In a module marked ``log_stores``, ``(backend, log_store)``: every backend with the logs in it (``sql``),
    then ``CLICKHOUSE_MAIN_BACKENDS`` with the logs in ClickHouse.
    """
    if "backend" in metafunc.fixturenames and not _parametrized_by_the_test(metafunc, "backend"):
        independent = metafunc.definition.get_closest_marker("backend_independent") is not None
        backends = ["sqlite"] if independent else BACKENDS
        if metafunc.definition.get_closest_marker("log_stores") is None:
            metafunc.parametrize("backend", backends)
            return
        clickhouse = [b for b in CLICKHOUSE_MAIN_BACKENDS if b in backends]
        combos = [(b, "sql") for b in backends] + [(b, "clickhouse") for b in clickhouse]
        ids = [b if store == "sql" else f"{b}+clickhouse" for b, store in combos]
        metafunc.parametrize(("backend", "log_store"), combos, ids=ids)


_SERVER_FIXTURES = {
    "postgres_url": "postgresql",
    "mariadb_url": "mariadb",
    "empty_mariadb_database": "mariadb",
    "clickhouse_server": "clickhouse",
}


def pytest_collection_modifyitems(items):
    """Mark tests that need the PostgreSQL or MariaDB server, so the fast lane can leave them out."""
    for item in items:
        servers = {_SERVER_FIXTURES[name] for name in getattr(item, "fixturenames", ()) if name in _SERVER_FIXTURES}
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("backend") in ("postgresql", "mariadb"):
            servers.add(callspec.params["backend"])
        if callspec is not None and callspec.params.get("log_store") == "clickhouse":
            servers.add("clickhouse")
        for server in sorted(servers):
            item.add_marker(server)


@pytest.fixture
def database_url(backend, tmp_path, request):
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'balance.sqlite3'}"
    return request.getfixturevalue({"postgresql": "postgres_url", "mariadb": "mariadb_url"}[backend])


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory):
    """A private ClickHouse server for the session (tests/clickhouse.py); its ``clickhouse://`` URL."""
    require_server()
    with running_clickhouse(tmp_path_factory.mktemp("clickhouse")) as url:
        yield url


@pytest.fixture
def clickhouse_url(clickhouse_server):
    """An empty ClickHouse database of this test's own, dropped after it."""
    with temporary_clickhouse_database(clickhouse_server) as url:
        yield url


@pytest.fixture
def log_store():
    """Where the gateway's logs are: ``sql`` (the test database) or ``clickhouse`` (``log_stores`` modules)."""
    return "sql"


@pytest.fixture
def make_app(database_url, log_store, request):
    """Build apps on the test database with config overrides; tables made as init-db makes them, rows wiped after.

    With ``log_store`` = ``clickhouse``, ``LOG_DATABASE_URL`` points at the test's ClickHouse database, as the
    read-only user (the tables are made and filled as ``default``).
    """
    apps = []
    clickhouse = request.getfixturevalue("clickhouse_url") if log_store == "clickhouse" else None
    defaults = {"LOG_DATABASE_URL": reader_url(clickhouse)} if clickhouse else {}

    def factory(**overrides):
        # The failed-auth limit is off unless a test turns it on: suites that send
        # many bad keys from the test client's one address must not trip it.
        config = {"TESTING": True, "DATABASE_URL": database_url, "AUTH_FAILURE_LIMIT": None, **defaults}
        config.update(overrides)
        app = create_app(config)
        with app.app_context():
            init_database(_db.engine)  # as init-db does: gateway tables when absent, balance_alerts via Alembic
        apps.append(app)
        return app

    yield factory
    for app in apps:
        clickhouse = app.extensions.get(CLICKHOUSE_EXTENSION)
        if clickhouse is not None:
            clickhouse.pool.close()
        with app.app_context():
            _db.session.remove()
            _db.session.execute(delete(BalanceAlert))
            _db.session.execute(delete(Token))
            _db.session.execute(delete(User))
            _db.session.commit()
            _db.engine.dispose()


@pytest.fixture
def mail_server():
    """The operator's mail server for e-mail alerts: a private SMTP server on loopback (tests/alert_receivers.py)."""
    with smtp_server() as state:
        yield state


@pytest.fixture
def app_config():
    """Config overrides for ``app``; a test sets them with ``@pytest.mark.parametrize("app_config", [...])``."""
    return {}


@pytest.fixture
def app(make_app, app_config):
    return make_app(**app_config)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def db(app):
    with app.app_context():
        yield _db


@pytest.fixture
def create_user(app):
    """Insert a user row directly, the way the gateway would; returns its id."""

    def factory(username=None, **fields):
        with app.app_context():
            user = User(username=username or f"user-{uuid.uuid4().hex[:8]}", **fields)
            _db.session.add(user)
            _db.session.commit()
            return user.id

    return factory


@pytest.fixture
def create_token(app, create_user):
    """Insert a token row (creating an owner unless ``user_id`` is given); returns ``sk-<key>``."""

    def factory(user_id=None, **fields):
        if user_id is None:
            user_id = create_user()
        key = uuid.uuid4().hex + uuid.uuid4().hex[:16]
        fields.setdefault("created_time", int(time.time()))
        with app.app_context():
            _db.session.add(Token(user_id=user_id, key=key, **fields))
            _db.session.commit()
        return "sk-" + key

    return factory


@pytest.fixture
def auth():
    def headers(key, **extra):
        return {"Authorization": f"Bearer {key}", **extra}

    return headers


@pytest.fixture(params=["new-api", "one-api"])
def flavour(request):
    """The gateway whose ``logs`` layout a usage test reads: new-api (``token_id``) or one-api (key by name)."""
    return request.param


@pytest.fixture
def logs(gateway_tables, flavour):
    """The gateway's ``logs`` table in the ``flavour`` layout."""
    return gateway_tables().create_logs(flavour)


@pytest.fixture
def november(app, create_user, create_token, logs):
    """The shared log rows across the October → November → December boundaries (``tests.gateway_logs``)."""
    return seed_november(app, create_user, create_token, logs)


@pytest.fixture
def options_table(gateway_tables):
    """The gateway's ``options`` table as GORM creates it, made on first use and dropped after the test.

    Returns ``set_option(key, value)``, which writes a row as the gateway's admin
    panel would. The service itself never writes this table.
    """
    tables = gateway_tables()

    def set_option(key, value):
        tables.set_options({key: value})

    return set_option


@pytest.fixture
def count_statements(app):
    """Count SQL statements the app sends inside a ``with`` block: through its engine and its direct reader."""

    @contextmanager
    def counter():
        seen = []

        def listener(conn, cursor, statement, *args):
            seen.append(statement)

        def direct(statement, parameters):
            seen.append(statement)

        with app.app_context():
            engine = _db.engine
        reader = direct_reads.reader(app)
        event.listen(engine, "before_cursor_execute", listener)
        reader.listeners.append(direct)
        try:
            yield seen
        finally:
            event.remove(engine, "before_cursor_execute", listener)
            reader.listeners.remove(direct)

    return counter


def _loopback_hosts(path: str = "/etc/hosts") -> dict[str, list[str]]:
    """Names that /etc/hosts maps to loopback addresses (always ``localhost``), with those addresses."""
    names: dict[str, list[str]] = {"localhost": []}
    try:
        with open(path, encoding="utf-8", errors="replace") as hosts:
            lines = hosts.read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        address, *aliases = line.split("#", 1)[0].split() or [""]
        try:
            if not ipaddress.ip_address(address).is_loopback:
                continue
        except ValueError:
            continue
        for name in aliases:
            names.setdefault(name.lower(), []).append(address)
    if not names["localhost"]:
        names["localhost"] = ["127.0.0.1"]
    return names


@pytest.fixture(autouse=True, scope="session")
def _no_dns_lookups():
    """Tests send nothing off this machine, not even a DNS query.

    ``socket.getaddrinfo`` answers IP literals (any form the C library reads
    as numeric) and loopback names from /etc/hosts without asking a server;
    any other name fails as an unknown name would, so code paths for
    unresolvable hosts are exercised offline. Subprocesses are not covered:
    they are only ever given loopback addresses.
    """
    real = socket.getaddrinfo
    loopback = _loopback_hosts()

    def offline_getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        numeric = flags | socket.AI_NUMERICHOST
        if host is None:
            return real(host, port, family, type, proto, flags)
        try:
            return real(host, port, family, type, proto, numeric)
        except socket.gaierror:
            pass
        name = host.decode("ascii", "replace") if isinstance(host, bytes) else str(host)
        answers = []
        for address in loopback.get(name.rstrip(".").lower(), []):
            with suppress(socket.gaierror):  # an address of another family than the one asked for
                answers += real(address, port, family, type, proto, numeric)
        if answers:
            return answers
        raise socket.gaierror(socket.EAI_NONAME, f"{name!r} not resolved: tests make no DNS lookups")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", offline_getaddrinfo)
        yield


@pytest.fixture
def gateway_tables(database_url, log_store, request):
    """The gateway's ``logs``/``options`` tables (tests/gateway_logs.py) in the test database or at a URL given;
    dropped after the test, so other tests on the shared database never see them. With ``log_store`` =
    ``clickhouse``, ``logs`` is made in the test's ClickHouse database and ``options`` in the main one."""
    made = []
    clickhouse = request.getfixturevalue("clickhouse_url") if log_store == "clickhouse" else None

    def factory(url=None):
        if url is None and clickhouse is not None:
            tables = ClickHouseTables(clickhouse, GatewayTables(database_url))
            made.append(tables)
            return tables
        tables = GatewayTables(url or database_url)
        made.append(tables)
        return tables

    yield factory
    for tables in made:
        tables.drop()


@pytest.fixture
def log_database_url(backend, tmp_path):
    """A second, empty database on the same backend: where a gateway's ``LOG_SQL_DSN`` would keep the logs.

    Request it before ``gateway_tables`` so that it is torn down after the tables made in it are dropped.
    """
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway-logs.sqlite3'}"
        return
    databases = {"postgresql": temporary_postgres_database, "mariadb": temporary_mariadb_database}
    with databases[backend]() as url:
        yield url
