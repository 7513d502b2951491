"""Resolve ``Authorization: Bearer sk-…`` to a token and its owner, for the API blueprints.

The lookup is one SQL statement (token LEFT JOIN user) so a balance request
costs one database round trip. Nothing here writes to the database.
"""

from __future__ import annotations

import re
import time
from functools import lru_cache
from typing import Any

from flask import current_app, g, request
from sqlalchemy import Row, Select, and_, bindparam, inspect, select

from .errors import ApiError
from .extensions import db
from .models import (
    NEVER_EXPIRES,
    TOKEN_DISABLED,
    TOKEN_EXPIRED,
    USER_DISABLED,
    Token,
    User,
    exact_string,
    live,
    soft_delete_columns,
)

KEY_LENGTH = 48
_KEY_RE = re.compile(rf"[A-Za-z0-9]{{1,{KEY_LENGTH}}}")


def parse_key(header: str | None) -> str:
    """Extract the stored form of the key from an Authorization header value.

    Accepts ``Bearer sk-<key>`` and ``Bearer <key>``; a ``-<suffix>`` after the
    key (the gateways' channel selector) is not part of the key and is dropped.
    """
    if header is None:
        raise ApiError(401, "No Authorization header")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise ApiError(401, "Authorization header must be 'Bearer sk-<key>'")
    return normalize_key(value)


def normalize_key(value: str) -> str:
    """``sk-<key>-<suffix>`` → ``<key>``, the form stored in ``tokens.key``."""
    value = value.strip()
    if value.startswith("sk-"):
        value = value[3:]
    key = value.split("-", 1)[0]
    if not key:
        raise ApiError(401, "Empty API key")
    if not _KEY_RE.fullmatch(key):
        raise ApiError(401, "Malformed API key")
    return key


def lookup(key: str) -> tuple[Token, User | None]:
    """Return the live token with this key and its live owner (``None`` if the owner is gone).

    One SQL statement, built once per table layout. Both come back as detached
    model instances made from one Core row: building an ORM select and loading
    it through the session cost about a third of a balance request's CPU
    (bench/README.md), and nothing here needs a session-bound object.
    """
    stmt, token_attrs, user_attrs = _lookup_statement(*soft_delete_columns(db.engine))
    row = _first_row_without_transaction(stmt, {"key": key})
    if row is None:
        raise ApiError(401, "Invalid token")
    token = Token(**dict(zip(token_attrs, row[: len(token_attrs)], strict=True)))
    user_fields = dict(zip(user_attrs, row[len(token_attrs) :], strict=True))
    if user_fields["id"] is None:  # the LEFT JOIN found no live owner
        return token, None
    return token, User(**user_fields)


@lru_cache(maxsize=4)
def _lookup_statement(tokens_soft: bool, users_soft: bool) -> tuple[Select, tuple[str, ...], tuple[str, ...]]:
    """``tokens LEFT JOIN users`` for one table layout, with the attribute names of its columns in order.

    Soft-deleted rows are filtered in SQL and ``deleted_at`` is never selected:
    the gateways write it in formats that vary by driver and version. The key
    is compared exactly (case and all) on every backend, see ``exact_string``.
    """
    parts = []
    for model in (Token, User):
        attrs = [a for a in inspect(model).column_attrs if a.key != "deleted_at"]
        parts.append((tuple(a.key for a in attrs), [a.columns[0] for a in attrs]))
    (token_attrs, token_columns), (user_attrs, user_columns) = parts
    tokens, users = Token.__table__, User.__table__
    owner = and_(users.c.id == tokens.c.user_id, live(User, users_soft))
    stmt = (
        select(*token_columns, *user_columns)
        .select_from(tokens.outerjoin(users, owner))
        .where(tokens.c.key == exact_string(bindparam("key")), live(Token, tokens_soft))
    )
    return stmt.limit(1), token_attrs, user_attrs


def _first_row_without_transaction(stmt: Select, params: dict[str, Any]) -> Row | None:
    """Run one SELECT on a pooled connection of its own, with no transaction around it.

    Outside the session, no session transaction is set up and torn down for one
    read, and the connection goes back to the pool before the response is
    rendered. On PostgreSQL the connection runs in autocommit for the statement:
    psycopg2 would otherwise send ``BEGIN`` before it and the pool ``ROLLBACK``
    after it, two extra round trips for a read that is atomic anyway. The flag
    is client-side and is put back before the connection returns to the pool.
    """
    with db.engine.connect() as connection:
        driver = connection.connection.driver_connection
        if connection.dialect.driver != "psycopg2":
            return connection.execute(stmt, params).first()
        driver.autocommit = True
        try:
            return connection.execute(stmt, params).first()
        finally:
            if not driver.closed:
                driver.autocommit = False


def token_refusal(status: int, expired_time: int, now: int) -> str | None:
    """Why a key may not be used (disabled, expired), or None; an exhausted key is still usable."""
    if status == TOKEN_DISABLED:
        return "Token is disabled"
    if status == TOKEN_EXPIRED or (expired_time != NEVER_EXPIRES and expired_time < now):
        return "Token has expired"
    return None


def check_token(token: Token, now: int | None = None) -> None:
    """Refuse disabled and expired keys; an exhausted key may still read its (zero) balance."""
    refusal = token_refusal(token.status, token.expired_time, int(time.time()) if now is None else now)
    if refusal:
        raise ApiError(401, refusal)


def role_is_unlimited(role: int) -> bool:
    """The gateway's users table has no "unlimited" column: roles in UNLIMITED_USER_ROLES count as unlimited."""
    return role in current_app.config["UNLIMITED_USER_ROLES"]


def check_user(user: User | None) -> User:
    if user is None:
        raise ApiError(404, "Failed to get user quota: the key's owner does not exist")
    if user.status == USER_DISABLED:
        raise ApiError(403, "User is disabled")
    return user


def authenticate() -> None:
    """``before_request`` hook: put ``g.token`` and ``g.user`` in place, or refuse."""
    if request.method == "OPTIONS":
        return  # CORS preflight carries no credentials by design.
    key = parse_key(request.headers.get("Authorization"))
    token, user = lookup(key)
    check_token(token)
    g.token = token
    g.user = check_user(user)
    current_app.logger.debug("authenticated token %s of user %s", token.id, user.id)
