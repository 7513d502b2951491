"""On PostgreSQL a balance request is one round trip on the wire: one ``EXECUTE`` of a statement prepared once.

The app talks to PostgreSQL through a loopback TCP proxy that reads the
protocol messages the client sends (psycopg2 uses the simple query protocol:
one ``Query`` message, then it waits for the answer). So these tests count
what really goes over the socket, not what the code says it does.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading

import psycopg2
import pytest
from sqlalchemy import literal_column, select
from sqlalchemy.engine import make_url

import balance_service
from balance_service._internal import direct_reads

pytestmark = pytest.mark.parametrize("backend", ["postgresql"])

#: Startup codes of the requests that come before the real startup packet.
_SSL_REQUEST, _GSSENC_REQUEST = 80877103, 80877104


class WireProxy:
    """Forwards loopback connections to PostgreSQL and records every message the clients send."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.messages: list[tuple[str, str]] = []  # (type letter, query text or "")
        self.connections = 0
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.connections += 1
                self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
            threading.Thread(target=self._read_client, args=(client, upstream), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _read_client(self, client: socket.socket, upstream: socket.socket) -> None:
        """Record each complete message before passing its bytes on, so it is counted before any answer."""
        buffer, started = b"", False
        try:
            while data := client.recv(65536):
                buffer += data
                while True:
                    if not started:  # untyped startup packets: length, then a code
                        if len(buffer) < 8 or len(buffer) < int.from_bytes(buffer[:4], "big"):
                            break
                        length, code = int.from_bytes(buffer[:4], "big"), int.from_bytes(buffer[4:8], "big")
                        buffer = buffer[length:]
                        started = code not in (_SSL_REQUEST, _GSSENC_REQUEST)
                        continue
                    if len(buffer) < 5 or len(buffer) < 1 + int.from_bytes(buffer[1:5], "big"):
                        break
                    kind, length = buffer[:1].decode(), int.from_bytes(buffer[1:5], "big")
                    body, buffer = buffer[5 : 1 + length], buffer[1 + length :]
                    with self.lock:
                        self.messages.append((kind, body[:-1].decode() if kind == "Q" else ""))
                upstream.sendall(data)
        except OSError:
            pass
        self._pump(upstream, client)  # already finished or about to; just close both

    def drop_connections(self) -> None:
        """Cut every proxied connection, as a database restart or a failover would."""
        with self.lock:
            sockets, self.sockets = self.sockets, []
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def sent_during(self, action) -> list[tuple[str, str]]:
        with self.lock:
            start = len(self.messages)
        action()
        with self.lock:
            return self.messages[start:]

    def close(self) -> None:
        self.listener.close()
        self.drop_connections()


@pytest.fixture
def proxy(postgres_url):
    url = make_url(postgres_url)
    server = WireProxy(url.host or "127.0.0.1", url.port or 5432)
    yield server
    server.close()


@pytest.fixture
def app_config(proxy, postgres_url):
    """The app reaches PostgreSQL through the proxy, in clear text so the messages can be read."""
    url = make_url(postgres_url).set(
        host="127.0.0.1", port=proxy.port, query={"sslmode": "disable", "gssencmode": "disable"}
    )
    return {"DATABASE_URL": url.render_as_string(hide_password=False)}


def balance(client, key, path="/v1/balance"):
    response = client.get(path, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.get_json()
    return response


@pytest.mark.parametrize("path", ["/v1/balance", "/v1/user/balance"])
def test_a_balance_request_sends_one_query_message_an_execute(client, create_token, proxy, path):
    key = create_token(remain_quota=5)
    balance(client, key, path)  # warm-up: table layout read once, statement prepared
    for _ in range(3):
        sent = proxy.sent_during(lambda: balance(client, key, path))
        assert len(sent) == 1, sent
        kind, query = sent[0]
        assert kind == "Q"
        assert query.startswith("EXECUTE "), query


def test_the_statement_is_prepared_once_per_connection(client, create_token, proxy):
    key = create_token(remain_quota=5)
    first = proxy.sent_during(lambda: balance(client, key))  # also reads the table layout, through the pool
    assert sum(q.startswith("PREPARE ") for _, q in first) == 1, first
    after = proxy.sent_during(lambda: [balance(client, key) for _ in range(5)])
    assert [q.split(" ", 1)[0] for _, q in after] == ["EXECUTE"] * 5, after


def test_a_dropped_connection_is_replaced_within_the_same_request(client, create_token, proxy):
    key = create_token(remain_quota=5)
    balance(client, key)
    before = proxy.connections
    proxy.drop_connections()
    sent = proxy.sent_during(lambda: balance(client, key))  # no error reaches the client
    assert proxy.connections == before + 1
    assert [q.split(" ", 1)[0] for kind, q in sent if kind == "Q"] == ["PREPARE", "EXECUTE"]
    assert len(proxy.sent_during(lambda: balance(client, key))) == 1


def test_a_forked_worker_opens_its_own_connection_and_leaves_the_parents_alone(client, create_token, proxy):
    key = create_token(remain_quota=5)
    balance(client, key)  # the parent's connection is open
    before = proxy.connections
    pid = os.fork()
    if pid == 0:  # the child, as a gunicorn worker forked from a preloaded master
        ok = False
        try:
            balance_service.after_fork()  # what gunicorn's post_fork does (gunicorn_conf.py)
            ok = client.get("/v1/balance", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert proxy.connections == before + 1  # the child's own
    # The parent's connection was neither used nor closed by the child: still one EXECUTE, no reconnect.
    sent = proxy.sent_during(lambda: balance(client, key))
    assert [q.split(" ", 1)[0] for kind, q in sent] == ["EXECUTE"]
    assert proxy.connections == before + 1


def test_a_prepared_statement_that_vanished_is_answered_and_prepared_statements_are_dropped(
    app, client, create_token, proxy, caplog
):
    """PgBouncer in transaction mode sends EXECUTE to a server connection that never saw the PREPARE."""
    key = create_token(remain_quota=5)
    balance(client, key)
    connection = direct_reads.reader(app)._local.connection  # this thread's, the one the test client uses
    connection.cursor.execute("DEALLOCATE ALL")  # what the next server connection behind such a pooler looks like
    sent = proxy.sent_during(lambda: balance(client, key))
    assert [q.split(" ", 1)[0] for _, q in sent] == ["EXECUTE", "SELECT"]
    assert "prepared statements do not survive" in caplog.text
    sent = proxy.sent_during(lambda: balance(client, key))
    assert [q.split(" ", 1)[0] for _, q in sent] == ["SELECT"]


def test_a_column_type_changed_by_a_gateway_migration_is_prepared_again(client, create_token, proxy, postgres_url):
    """PostgreSQL refuses a prepared statement whose result types changed ("cached plan must not change")."""
    key = create_token(remain_quota=5, name="laptop")
    balance(client, key)
    with contextlib.closing(psycopg2.connect(postgres_url)) as admin:
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute("ALTER TABLE tokens ALTER COLUMN name TYPE text")  # was varchar(64)
        try:
            sent = proxy.sent_during(lambda: balance(client, key))
            assert [q.split(" ", 1)[0] for _, q in sent] == ["EXECUTE", "DEALLOCATE", "PREPARE", "EXECUTE"]
            assert len(proxy.sent_during(lambda: balance(client, key))) == 1
        finally:
            with admin.cursor() as cur:
                cur.execute("ALTER TABLE tokens ALTER COLUMN name TYPE varchar(64)")


def test_statements_made_ready_again_after_the_plan_cache_filled_up_are_not_prepared_again(
    app, client, create_token, proxy
):
    """The reader keeps ``_MAX_PLANS`` statements ready and then starts afresh; the server keeps one per statement."""
    key = create_token(remain_quota=5)
    reader = direct_reads.reader(app)
    others = [select(literal_column(str(n))) for n in range(direct_reads._MAX_PLANS)]

    def everything() -> None:
        balance(client, key)
        for n, stmt in enumerate(others):
            assert reader.rows(stmt, {}) == [(n,)]

    everything()  # each prepared once; the cache filled up and was emptied
    sent = proxy.sent_during(lambda: [everything() for _ in range(2)])
    assert {q.split(" ", 1)[0] for _, q in sent} == {"EXECUTE"}, sent
    connection = reader._local.connection
    connection.cursor.execute("SELECT count(*) FROM pg_prepared_statements")
    assert connection.cursor.fetchone() == (len(others) + 1,)
