"""MySQL / MariaDB specifics: exact key comparison through the index, URL spellings, timeouts.

These run on the real MariaDB only (the behaviour they pin down does not exist
elsewhere); what every backend must do is tested in the feature files.
"""

import threading
import time

import pymysql
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

from balance_service._internal import direct_reads
from balance_service.extensions import db as _db
from balance_service.gateway.keys import lookup
from balance_service.gateway.rules import KeyRejected

pytestmark = pytest.mark.parametrize("backend", ["mariadb"])


def connect(url: str) -> pymysql.Connection:
    """A second client of the test database, as another program on the server would be."""
    url = make_url(url)
    return pymysql.connect(
        host=url.host, port=url.port, user=url.username, password=url.password or "", database=url.database
    )


def test_the_server_really_compares_case_insensitively_and_pads_spaces(db):
    """The trap the key lookup must avoid: a plain ``=`` on MariaDB's default collation."""
    row = db.session.execute(text("SELECT 'AbC' = 'abc', 'abc' = 'abc   ', @@collation_database")).one()
    assert tuple(row[:2]) == (1, 1)
    assert row[2].endswith("_ci")


def test_the_key_lookup_refuses_the_stored_key_followed_by_spaces(db, create_token):
    # The header parser already strips and forbids spaces; this checks the SQL itself is exact.
    key = create_token(remain_quota=1).removeprefix("sk-")
    assert lookup(key)[0].remain_quota == 1  # found: the row holds no key, only the columns read
    for padded in (key + " ", key + "   "):
        with pytest.raises(KeyRejected, match="Invalid token"):
            lookup(padded)


def test_the_key_lookup_is_one_statement_that_uses_the_unique_index(app, client, auth, create_token):
    key = create_token(remain_quota=1)
    client.get("/v1/balance", headers=auth(key))  # warm-up: reads the table layout once
    seen = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))

    def capture_direct(statement, parameters):
        seen.append((statement, parameters))

    with app.app_context():
        engine = _db.engine
    reader = direct_reads.reader(app)
    event.listen(engine, "before_cursor_execute", capture)
    reader.listeners.append(capture_direct)
    try:
        assert client.get("/v1/balance", headers=auth(key)).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", capture)
        reader.listeners.remove(capture_direct)
    assert len(seen) == 1
    statement, parameters = seen[0]
    assert "tokens.`key` = CAST(" in statement and " AS BINARY)" in statement
    with app.app_context():
        plan = _db.session.connection().exec_driver_sql("EXPLAIN " + statement, parameters).mappings().all()
    tokens = next(row for row in plan if row["table"] == "tokens")
    # const: at most one row, found through the unique index on `key`; never a scan.
    assert tokens["type"] == "const", plan
    assert tokens["key"] is not None, plan


def test_a_mariadb_url_without_a_driver_works(make_app, mariadb_url, create_token):
    key = create_token(remain_quota=1500000)
    url = mariadb_url.replace("mysql+pymysql://", "mariadb://", 1)
    app = make_app(DATABASE_URL=url)
    assert app.config["SQLALCHEMY_DATABASE_URI"].startswith("mariadb+pymysql://")
    response = app.test_client().get("/v1/balance", headers={"Authorization": f"Bearer {key}"})
    assert response.get_json()["balance"] == 3


def test_a_locked_table_gives_503_within_the_statement_timeout_instead_of_hanging(make_app, mariadb_url):
    app = make_app(DB_STATEMENT_TIMEOUT_MS=500)
    client = app.test_client()
    headers = {"Authorization": "Bearer sk-" + "L" * 48}
    assert client.get("/v1/balance", headers=headers).status_code == 401  # warm-up: table layout read
    locker = connect(mariadb_url)
    release = threading.Timer(10, locker.close)  # never leave the lock behind if the test breaks
    try:
        with locker.cursor() as cur:
            cur.execute("LOCK TABLES tokens WRITE")
        release.start()
        started = time.monotonic()
        response = client.get("/v1/balance", headers=headers)
        elapsed = time.monotonic() - started
    finally:
        release.cancel()
        if locker.open:
            locker.close()  # also releases the table lock
    assert response.status_code == 503
    assert response.get_json()["success"] is False
    assert elapsed < 3, elapsed
    # The pool threw the timed-out connection away: the next request is served normally.
    assert client.get("/v1/balance", headers=headers).status_code == 401
