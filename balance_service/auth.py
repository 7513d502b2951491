"""Resolve ``Authorization: Bearer sk-…`` to a token and its owner, for the API blueprints.

The lookup is one SQL statement (token LEFT JOIN user) so a balance request
costs one database round trip. Nothing here writes to the database.
"""

from __future__ import annotations

import re
import time

from flask import current_app, g, request
from psycopg2.extensions import TRANSACTION_STATUS_IDLE as IDLE
from sqlalchemy import Row, Select
from sqlalchemy.orm import defer

from .errors import ApiError
from .extensions import db
from .models import NEVER_EXPIRES, TOKEN_DISABLED, TOKEN_EXPIRED, USER_DISABLED, Token, User, soft_delete_columns

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
    """Return the live token with this key and its owner (``None`` if the owner row is gone)."""
    tokens_soft, users_soft = soft_delete_columns(db.engine)
    stmt = db.select(Token, User).outerjoin(User, User.id == Token.user_id).where(Token.key == key)
    if tokens_soft:
        stmt = stmt.where(Token.deleted_at.is_(None))
    else:
        stmt = stmt.options(defer(Token.deleted_at, raiseload=True))
    if not users_soft:
        stmt = stmt.options(defer(User.deleted_at, raiseload=True))
    row = _first_row_without_transaction(stmt.limit(1))
    if row is None:
        raise ApiError(401, "Invalid token")
    token, user = row
    if user is not None and users_soft and user.deleted_at is not None:
        user = None
    return token, user


def _first_row_without_transaction(stmt: Select) -> Row | None:
    """Run one SELECT with the PostgreSQL driver in autocommit mode.

    psycopg2 otherwise sends ``BEGIN`` before the statement and the session
    sends ``ROLLBACK`` after it: two extra round trips for a lone read that is
    atomic anyway (bench/ measures the difference). Like SQLAlchemy's own pool
    ping, this flips the driver's client-side flag and puts it back, and only
    on a connection with no transaction open, so later statements in the same
    request (if any) get their usual transaction.
    """
    connection = db.session.connection()
    driver = connection.connection.driver_connection
    if connection.dialect.driver != "psycopg2" or driver.autocommit or driver.info.transaction_status != IDLE:
        return db.session.execute(stmt).first()
    driver.autocommit = True
    try:
        return db.session.execute(stmt).first()
    finally:
        if not driver.closed:
            driver.autocommit = False


def check_token(token: Token, now: int | None = None) -> None:
    """Refuse disabled and expired keys; an exhausted key may still read its (zero) balance."""
    now = int(time.time()) if now is None else now
    if token.status == TOKEN_DISABLED:
        raise ApiError(401, "Token is disabled")
    if token.status == TOKEN_EXPIRED or (token.expired_time != NEVER_EXPIRES and token.expired_time < now):
        raise ApiError(401, "Token has expired")


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
