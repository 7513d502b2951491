"""Amounts are written as exact JSON numbers, every digit kept."""

from decimal import Decimal

import pytest

from balance_service import create_app


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    database = tmp_path_factory.mktemp("json") / "balance.sqlite3"
    return create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{database}"}).json


def test_amounts_keep_every_digit(provider):
    assert provider.dumps({"balance": Decimal("0.000001"), "used": Decimal("123456789012345.678901")}) == (
        '{"balance":0.000001,"used":123456789012345.678901}'
    )
