"""The key lookup on PostgreSQL costs one round trip for the SELECT, with no transaction around it."""

import pytest
from psycopg2.extensions import TRANSACTION_STATUS_IDLE

from balance_service.auth import authenticate
from balance_service.extensions import db as _db


@pytest.fixture
def backend():
    """Only PostgreSQL: the BEGIN/ROLLBACK this saves is psycopg2's."""
    return "postgresql"


def test_lookup_leaves_no_transaction_open_and_the_driver_in_transaction_mode(app, create_token, auth):
    key = create_token(remain_quota=5)
    with app.test_request_context("/v1/balance", headers=auth(key)):
        authenticate()
        driver = _db.session.connection().connection.driver_connection
        # A BEGIN before the SELECT would leave the server in a transaction here.
        assert driver.info.transaction_status == TRANSACTION_STATUS_IDLE
        # Later statements in the request (a write, say) still get a transaction.
        assert driver.autocommit is False
        _db.session.execute(_db.text("SELECT 1"))
        assert driver.info.transaction_status != TRANSACTION_STATUS_IDLE


def test_lookup_inside_an_open_transaction_keeps_that_transaction(app, create_token, auth):
    key = create_token(remain_quota=5)
    with app.test_request_context("/v1/balance", headers=auth(key)):
        _db.session.execute(_db.text("SELECT 1"))
        driver = _db.session.connection().connection.driver_connection
        authenticate()
        assert driver.info.transaction_status != TRANSACTION_STATUS_IDLE
        assert driver.autocommit is False
