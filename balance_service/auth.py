"""Resolve ``Authorization: Bearer sk-…`` to a token and its owner, for the API blueprints.

The lookup is one SQL statement (token LEFT JOIN user) so a balance request
costs one database round trip. Nothing here writes to the database.
"""

from __future__ import annotations

import re
import time

from flask import current_app, g, request
from sqlalchemy.orm import defer

from .errors import ApiError
from .extensions import db
from .models import (
    NEVER_EXPIRES,
    TOKEN_DISABLED,
    TOKEN_EXPIRED,
    USER_DISABLED,
    Token,
    User,
    key_equals,
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

    Soft-deleted rows are filtered in SQL, so ``deleted_at`` is never loaded:
    the gateways write it in formats that vary by driver and version.
    """
    tokens_soft, users_soft = soft_delete_columns(db.engine)
    owner = User.id == Token.user_id
    if users_soft:
        owner = owner & User.deleted_at.is_(None)
    stmt = (
        db.select(Token, User)
        .outerjoin(User, owner)
        .where(key_equals(key))
        .options(defer(Token.deleted_at, raiseload=True), defer(User.deleted_at, raiseload=True))
        .limit(1)
    )
    if tokens_soft:
        stmt = stmt.where(Token.deleted_at.is_(None))
    row = db.session.execute(stmt).first()
    if row is None:
        raise ApiError(401, "Invalid token")
    return row.Token, row.User


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
