"""The before_request hook: every way a key can be refused, and the ways it is accepted."""

import json
import time
from datetime import datetime
from decimal import Decimal

import pytest

from balance_service.auth import parse_key
from balance_service.errors import ApiError
from balance_service.gateway import operations as ops
from balance_service.gateway.tables import TOKEN_DISABLED, TOKEN_EXHAUSTED, TOKEN_EXPIRED, USER_DISABLED, Token

ENDPOINTS = ["/v1/balance", "/v1/user/balance"]


def refusal(response, status):
    assert response.status_code == status
    assert response.is_json
    body = response.get_json()
    assert body["success"] is False
    return body["message"]


@pytest.mark.backend_independent
@pytest.mark.parametrize("path", ENDPOINTS)
def test_missing_header_is_rejected_with_401(client, path):
    assert refusal(client.get(path), 401) == "No Authorization header"


@pytest.mark.backend_independent
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("Basic dXNlcjpwYXNz", "Authorization header must be 'Bearer sk-<key>'"),
        ("sk-abc", "Authorization header must be 'Bearer sk-<key>'"),
        ("Bearer", "Empty API key"),
        ("Bearer ", "Empty API key"),
        ("Bearer sk-", "Empty API key"),
        ("Bearer sk-abc$def", "Malformed API key"),
        ("Bearer sk-" + "a" * 49, "Malformed API key"),
        ("Bearer sk-ab cd", "Malformed API key"),
        ("Bearer ' OR 1=1 --", "Malformed API key"),
    ],
)
def test_malformed_header_is_rejected_with_401_and_a_reason(client, value, message):
    assert refusal(client.get("/v1/balance", headers={"Authorization": value}), 401) == message


@pytest.mark.parametrize("path", ENDPOINTS)
def test_unknown_key_is_rejected_with_401(client, auth, path):
    assert refusal(client.get(path, headers=auth("sk-" + "x" * 48)), 401) == "Invalid token"


def test_soft_deleted_key_is_rejected_as_invalid(client, auth, create_token):
    key = create_token(remain_quota=10, deleted_at=datetime(2026, 1, 1))
    assert refusal(client.get("/v1/balance", headers=auth(key)), 401) == "Invalid token"


def test_disabled_key_is_rejected_with_401(client, auth, create_token):
    key = create_token(status=TOKEN_DISABLED)
    assert refusal(client.get("/v1/user/balance", headers=auth(key)), 401) == "Token is disabled"


@pytest.mark.parametrize("path", ENDPOINTS)
def test_key_with_expired_status_can_still_read_its_balance(client, auth, create_token, path):
    key = create_token(status=TOKEN_EXPIRED, remain_quota=500000)
    body = client.get(path, headers=auth(key)).get_json()
    assert body["success"] is True
    assert body["remain_balance"] == (1 if path == "/v1/balance" else 0)


def test_key_past_its_expiry_time_can_still_read_its_balance(client, auth, create_token):
    key = create_token(expired_time=int(time.time()) - 5, remain_quota=250000)
    response = client.get("/v1/balance", headers=auth(key))
    assert response.status_code == 200
    assert response.get_json()["remain_balance"] == Decimal("0.5")


def test_key_expiring_in_the_future_is_accepted(client, auth, create_token):
    key = create_token(expired_time=int(time.time()) + 3600, remain_quota=500000)
    assert client.get("/v1/balance", headers=auth(key)).get_json()["balance"] == 1


def test_exhausted_key_can_still_read_its_zero_balance(client, auth, create_token):
    key = create_token(status=TOKEN_EXHAUSTED, remain_quota=0, used_quota=500000)
    body = client.get("/v1/balance", headers=auth(key)).get_json()
    assert body["success"] is True
    assert body["balance"] == 0
    assert body["used"] == 1


@pytest.mark.parametrize("path", ENDPOINTS)
def test_key_whose_owner_is_missing_gets_404_with_the_documented_message(client, auth, create_token, path, capsys):
    key = create_token(user_id=987654)
    capsys.readouterr()
    response = client.get(path, headers=auth(key))
    assert refusal(response, 404) == "Failed to get user quota"
    # The detail is in the service log, on a JSON line that carries the request id sent back to the caller.
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    [detail] = [line for line in lines if "987654" in line["message"]]
    assert detail["request_id"] == response.headers["X-Request-ID"]
    assert "does not exist" in detail["message"]


def test_key_whose_owner_is_soft_deleted_gets_404(client, auth, create_user, create_token):
    owner = create_user(deleted_at=datetime(2026, 1, 1))
    key = create_token(user_id=owner)
    assert refusal(client.get("/v1/user/balance", headers=auth(key)), 404) == "Failed to get user quota"


def test_key_of_a_disabled_user_gets_403(client, auth, create_user, create_token):
    owner = create_user(status=USER_DISABLED, quota=100)
    key = create_token(user_id=owner)
    assert refusal(client.get("/v1/user/balance", headers=auth(key)), 403) == "User is disabled"


@pytest.mark.parametrize(
    "template",
    ["Bearer sk-{k}", "Bearer {k}", "bearer sk-{k}", "Bearer   sk-{k}  ", "Bearer sk-{k}-channel7", "Bearer {k}-x"],
)
def test_accepted_key_spellings_all_reach_the_same_token(client, create_token, template):
    key = create_token(remain_quota=1000000)
    bare = key.removeprefix("sk-")
    response = client.get("/v1/balance", headers={"Authorization": template.format(k=bare)})
    assert response.status_code == 200
    assert response.get_json()["balance"] == 2


def test_a_prefix_of_a_real_key_is_not_accepted(client, auth, create_token):
    key = create_token()
    assert refusal(client.get("/v1/balance", headers=auth(key[:-1])), 401) == "Invalid token"


def test_balance_lookup_is_one_sql_statement(client, auth, create_token, count_statements):
    key = create_token(remain_quota=5)
    client.get("/v1/balance", headers=auth(key))  # warm-up: reads the table layout once
    with count_statements() as statements:
        assert client.get("/v1/user/balance", headers=auth(key)).status_code == 200
    assert len(statements) == 1, statements


def test_parse_key_strips_prefix_and_suffix():
    assert parse_key("Bearer sk-" + "A1" * 24 + "-x-y") == "A1" * 24
    with pytest.raises(ApiError):
        parse_key(None)


MIXED_CASE_KEY = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789aBcDeFgHiJkL"
OTHER_CASINGS = [MIXED_CASE_KEY.lower(), MIXED_CASE_KEY.upper(), MIXED_CASE_KEY.swapcase(), MIXED_CASE_KEY[:-1] + "l"]


@pytest.fixture
def mixed_case_key(db, create_user):
    """A key whose letters are of both cases, stored as the gateway would store it."""
    db.session.add(Token(user_id=create_user(quota=500000), key=MIXED_CASE_KEY, remain_quota=500000))
    db.session.commit()
    return "sk-" + MIXED_CASE_KEY


@pytest.mark.parametrize("presented", OTHER_CASINGS)
def test_key_differing_only_in_letter_case_is_rejected_with_401(client, auth, mixed_case_key, presented):
    # MySQL/MariaDB compare with a case-insensitive collation unless told otherwise.
    assert client.get("/v1/balance", headers=auth(mixed_case_key)).status_code == 200
    for path in ENDPOINTS:
        assert refusal(client.get(path, headers=auth("sk-" + presented)), 401) == "Invalid token"


def test_operator_commands_do_not_find_a_key_by_a_different_letter_case(db, mixed_case_key):
    with pytest.raises(ops.OperationError, match="no such key"):
        ops.top_up_token("sk-" + MIXED_CASE_KEY.swapcase(), 5)
    assert ops.top_up_token(mixed_case_key, 5) == 500005
