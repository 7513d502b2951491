"""Every answer's JSON is written exactly as simplejson with exact decimals writes it, on the fast path too."""

from decimal import Decimal

import pytest
import simplejson
from hypothesis import given
from hypothesis import strategies as st

from balance_service import create_app


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    database = tmp_path_factory.mktemp("json") / "balance.sqlite3"
    return create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{database}"}).json


def outcome(dumps, obj):
    """The text written, or the error raised (simplejson refuses NaN and infinities)."""
    try:
        return dumps(obj)
    except ValueError as e:
        return type(e)


def reference(obj):
    return outcome(lambda o: simplejson.dumps(o, use_decimal=True, separators=(",", ":")), obj)


scalars = st.one_of(
    st.text(),
    st.booleans(),
    st.none(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.decimals(allow_nan=True, allow_infinity=True),
)


@given(st.dictionaries(st.text(), scalars, max_size=8))
def test_flat_answers_are_written_exactly_as_simplejson_writes_them(provider, obj):
    assert outcome(provider.dumps, obj) == reference(obj)


@pytest.mark.parametrize(
    "obj",
    [
        {"success": True, "balance": Decimal("12.345678"), "used": Decimal("0E-6"), "unit": "USD"},
        {"nested": {"a": [1, Decimal("0.1")]}, "list": [True, None]},
        [Decimal("1.10"), "é\u2028"],
        {1: "non-string key"},
        {"float": 0.1, "big": Decimal("1E+30"), "negative zero": Decimal("-0")},
    ],
)
def test_other_shapes_are_written_as_simplejson_writes_them(provider, obj):
    assert outcome(provider.dumps, obj) == reference(obj)


def test_amounts_keep_every_digit(provider):
    assert provider.dumps({"balance": Decimal("0.000001"), "used": Decimal("123456789012345.678901")}) == (
        '{"balance":0.000001,"used":123456789012345.678901}'
    )
