"""Reference (b) for the benchmark: the balance lookup with nothing around it.

A minimal Flask app that answers ``GET /v1/balance`` with the same SQL the
service runs (``tokens LEFT JOIN users`` on the new-api layout, the 20 columns
the service reads), on one raw psycopg2 connection per worker in autocommit.
No pool, no SQLAlchemy, no logging, metrics, CORS or limiter: it is the
ceiling for an app on this stack that reads the database for each request.

``RAW_PREPARED=1`` prepares the statement once per connection (``PREPARE`` /
``EXECUTE``), so PostgreSQL skips parsing and planning on every request.
It runs under the same ``gunicorn.conf.py`` as the service (``bench/run.py``
starts it with ``--pythonpath bench raw_app:app``).
"""

from __future__ import annotations

import os
from decimal import Decimal

import psycopg2
from flask import Flask, jsonify, request

DSN = os.environ["DATABASE_URL"]
PREPARED = os.environ.get("RAW_PREPARED") == "1"
QUOTA_PER_UNIT = Decimal(500000)

SELECT = (
    "SELECT tokens.id, tokens.user_id, tokens.key, tokens.status, tokens.name, tokens.created_time, "
    "tokens.accessed_time, tokens.expired_time, tokens.remain_quota, tokens.unlimited_quota, tokens.used_quota, "
    "users.id, users.username, users.display_name, users.role, users.status, users.quota, users.used_quota, "
    'users.request_count, users."group" '
    "FROM tokens LEFT OUTER JOIN users ON users.id = tokens.user_id AND users.deleted_at IS NULL "
    "WHERE tokens.key = {param} AND tokens.deleted_at IS NULL LIMIT 1"
)

app = Flask(__name__)
_connection = None


def _cursor():
    """This worker's connection (opened on first use, after gunicorn forked), and a cursor on it."""
    global _connection
    if _connection is None or _connection.closed:
        _connection = psycopg2.connect(DSN)
        _connection.autocommit = True
        if PREPARED:
            with _connection.cursor() as cur:
                # No parameter type: PostgreSQL takes it from tokens.key (char(48)). Declaring it
                # text would cast the column instead and skip its unique index (a scan per request).
                cur.execute("PREPARE balance_lookup AS " + SELECT.format(param="$1"))
    return _connection.cursor()


_QUERY = "EXECUTE balance_lookup(%s)" if PREPARED else SELECT.format(param="%s")


@app.get("/v1/balance")
def balance():
    header = request.headers.get("Authorization", "")
    key = header.removeprefix("Bearer ").removeprefix("sk-")
    with _cursor() as cur:
        cur.execute(_QUERY, (key,))
        row = cur.fetchone()
    if row is None:
        return jsonify(success=False, message="Invalid token"), 401
    unlimited = bool(row[9])
    return jsonify(
        success=True,
        balance=Decimal(row[8]) / QUOTA_PER_UNIT,
        used=Decimal(row[10]) / QUOTA_PER_UNIT,
        unlimited_quota=unlimited,
        unit="USD",
    )


@app.get("/healthz")
def healthz():
    return jsonify(success=True, status="ok")
