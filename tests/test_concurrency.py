"""Top-ups under concurrency on the real PostgreSQL: no lost update, reads stay consistent."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import text

from balance_service.extensions import db
from balance_service.gateway import operations as ops
from balance_service.gateway.tables import Token, User
from tests.helpers import run_concurrently

THREADS = 8
ROUNDS = 40


# Concurrency needs a server database: these tests run on PostgreSQL only.
pytestmark = pytest.mark.parametrize("backend", ["postgresql"])


def test_concurrent_top_ups_and_gateway_debits_lose_nothing(app, create_user, create_token):
    user_id = create_user(username="busy", quota=1_000_000)
    key = create_token(user_id=user_id, remain_quota=0)
    reads: list[Decimal] = []

    def top_ups():
        with app.app_context():
            for i in range(ROUNDS):
                ops.top_up_user("busy", 1000 + i)
                ops.top_up_token(key, 7)

    def debits():
        # The gateway's own spending runs beside us: the same row, decremented in place.
        with app.app_context():
            for _ in range(ROUNDS):
                db.session.execute(text("UPDATE users SET quota = quota - 300 WHERE id = :id"), {"id": user_id})
                db.session.commit()

    def readers():
        client = app.test_client()
        for _ in range(ROUNDS):
            response = client.get("/v1/user/balance", headers={"Authorization": f"Bearer {key}"})
            assert response.status_code == 200, response.get_data(as_text=True)
            reads.append(response.get_json()["balance"])

    run_concurrently([top_ups] * 4 + [debits] * 2 + [readers] * 2)

    top_up_total = 4 * sum(1000 + i for i in range(ROUNDS))
    expected = 1_000_000 + top_up_total - 2 * ROUNDS * 300
    with app.app_context():
        assert db.session.get(User, user_id).quota == expected
        token = db.session.execute(db.select(Token).where(Token.key == key[3:])).scalar_one()
        assert token.remain_quota == 4 * ROUNDS * 7
    assert len(reads) == 2 * ROUNDS
    assert all(isinstance(r, Decimal) and r >= 0 for r in reads)


def test_eight_threads_of_top_ups_give_an_exact_balance_over_http(app, create_user, create_token):
    user_id = create_user(username="exact", quota=0)
    key = create_token(user_id=user_id)

    def worker():
        with app.app_context():
            for _ in range(ROUNDS):
                ops.top_up_user(str(user_id), 12_345)

    run_concurrently([worker] * THREADS)
    body = app.test_client().get("/v1/user/balance", headers={"Authorization": f"Bearer {key}"}).get_json()
    assert body["balance"] == Decimal(THREADS * ROUNDS * 12_345) / 500_000
