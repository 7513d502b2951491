"""The key lookup on PostgreSQL is one round trip for its SELECT: no BEGIN before it, no ROLLBACK after."""

import pytest
from psycopg2.extensions import TRANSACTION_STATUS_INTRANS
from sqlalchemy import event

from balance_service.extensions import db as _db

# Only PostgreSQL: the BEGIN/ROLLBACK this saves is psycopg2's.
pytestmark = pytest.mark.parametrize("backend", ["postgresql"])


def test_lookup_runs_in_autocommit_and_hands_the_connection_back_in_transaction_mode(app, client, auth, create_token):
    key = create_token(remain_quota=5)
    client.get("/v1/balance", headers=auth(key))  # warm-up: reads the table layout once
    seen = []

    def record(conn, cursor, statement, *args):
        # psycopg2 sends BEGIN first unless the connection is in autocommit.
        seen.append(conn.connection.driver_connection.autocommit)

    with app.app_context():
        engine = _db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        assert client.get("/v1/balance", headers=auth(key)).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert seen == [True]
    # Whatever runs next on that pooled connection (a write, say) gets a transaction again.
    with app.app_context(), _db.engine.connect() as connection:
        driver = connection.connection.driver_connection
        assert driver.autocommit is False
        connection.exec_driver_sql("SELECT 1")
        assert driver.info.transaction_status == TRANSACTION_STATUS_INTRANS
