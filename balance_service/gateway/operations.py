"""Operator actions behind the CLI: create accounts and keys, top up, disable.

Top-ups are a single ``UPDATE … SET quota = quota + n`` so concurrent top-ups
(and the gateway's own concurrent debits) can never lose an update. Its WHERE
refuses a sum beyond the BIGINT range: SQLite would store it as a REAL (and
lose later top-ups to rounding), PostgreSQL and MariaDB would fail.
"""

from __future__ import annotations

import re
import secrets
import string
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import case, func, insert, update
from sqlalchemy.orm import InstrumentedAttribute, defer

from ..extensions import db
from .money import MAX_QUOTA
from .rules import InvalidKey, normalize_key
from .tables import (
    NEVER_EXPIRES,
    TOKEN_DISABLED,
    TOKEN_ENABLED,
    TOKEN_EXHAUSTED,
    USER_ENABLED,
    Token,
    User,
    exact_string,
    live,
    soft_delete_columns,
)

_KEY_ALPHABET = string.ascii_letters + string.digits
_DURATION = re.compile(r"(\d+)([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class OperationError(Exception):
    """An operator command cannot be carried out; the message says why."""


def generate_key() -> str:
    """48 random alphanumerics, the shape the gateways issue (stored without ``sk-``)."""
    return "".join(secrets.choice(_KEY_ALPHABET) for _ in range(48))


def parse_expiry(value: str | None, now: int | None = None) -> int:
    """``never`` / unset → -1; ``30d``, ``12h`` → from now; an ISO date or Unix seconds → as given."""
    now = int(time.time()) if now is None else now
    if value is None or value.strip().lower() in ("", "never", "-1"):
        return NEVER_EXPIRES
    value = value.strip()
    if value.isdigit():
        return int(value)
    duration = _DURATION.fullmatch(value)
    if duration:
        return now + int(duration.group(1)) * _SECONDS[duration.group(2)]
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise OperationError(f"cannot read expiry {value!r}: use 'never', 30d, 2027-01-31 or Unix seconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _load(model, row_id: int):
    """One row as a model instance, without ``deleted_at`` (one-api's tables do not have it)."""
    stmt = db.select(model).where(model.id == row_id).options(defer(model.deleted_at, raiseload=True))
    return db.session.execute(stmt).scalar_one()


def _insert(model, **values) -> int:
    """INSERT only the given columns (never ``deleted_at``, which one-api's tables lack); returns the new id."""
    result = db.session.execute(insert(model.__table__).values(**values))
    db.session.commit()
    return result.inserted_primary_key[0]


def find_user(name_or_id: str) -> User:
    """A live user by username; a number that is nobody's username is taken as a user id (so user "42" wins)."""
    _, users_soft = soft_delete_columns(db.engine)
    alive = live(User, users_soft)
    user_id = db.session.execute(db.select(User.id).where(User.username == name_or_id, alive)).scalar()
    if user_id is None and name_or_id.isdigit():
        user_id = db.session.execute(db.select(User.id).where(User.id == int(name_or_id), alive)).scalar()
    if user_id is None:
        raise OperationError(f"no user {name_or_id!r}")
    return _load(User, user_id)


def create_user(username: str, quota: int = 0, role: int = 1) -> User:
    if quota < 0:
        raise OperationError("quota cannot be negative")
    exists = db.session.execute(db.select(User.id).where(User.username == username)).first()
    if exists:
        raise OperationError(f"user {username!r} already exists")
    user_id = _insert(User, username=username, display_name=username, quota=quota, role=role, status=USER_ENABLED)
    return _load(User, user_id)


def create_token(
    user: User, name: str = "", quota: int = 0, unlimited: bool = False, expires: int = NEVER_EXPIRES
) -> tuple[Token, str]:
    """Create a key for ``user``; returns the token and the full ``sk-`` key (shown once)."""
    if quota < 0:
        raise OperationError("quota cannot be negative")
    key = generate_key()
    now = int(time.time())
    token_id = _insert(
        Token,
        user_id=user.id,
        key=key,
        status=TOKEN_ENABLED,
        name=name or f"{user.username}-key",
        created_time=now,
        accessed_time=now,
        expired_time=expires,
        remain_quota=quota,
        unlimited_quota=unlimited,
        used_quota=0,
    )
    token = _load(Token, token_id)
    return token, "sk-" + key


def _top_up(model, find_id: Callable[[], int], column: InstrumentedAttribute[int], amount: int, **values) -> int:
    """``column += amount`` on the row ``find_id()`` names, in one UPDATE (see the module's docstring)."""
    if amount <= 0:
        raise OperationError("amount must be positive")
    row_id = find_id()
    if amount > MAX_QUOTA:
        raise OperationError(f"amount is more than a quota column can hold ({MAX_QUOTA})")
    current = func.coalesce(column, 0)  # a NULL, which the gateway reads as 0, counts as 0
    result = db.session.execute(
        update(model)
        .where(model.id == row_id, current <= MAX_QUOTA - amount)
        .values({column: current + amount, **values})
    )
    db.session.commit()
    if result.rowcount != 1:
        raise OperationError(
            f"top-up refused: the result would be more than {MAX_QUOTA}, the most a quota column holds; nothing changed"
        )
    return db.session.execute(db.select(column).where(model.id == row_id)).scalar_one()


def top_up_user(name_or_id: str, amount: int) -> int:
    """Add ``amount`` quota to a user atomically; returns the quota after the top-up."""
    return _top_up(User, lambda: find_user(name_or_id).id, User.quota, amount)


def _token_id(key: str) -> int:
    try:
        stored = normalize_key(key)
    except InvalidKey as e:
        raise OperationError(str(e)) from None
    tokens_soft, _ = soft_delete_columns(db.engine)
    stmt = db.select(Token.id).where(Token.key == exact_string(stored), live(Token, tokens_soft))
    token_id = db.session.execute(stmt).scalar()
    if token_id is None:
        raise OperationError("no such key")
    return token_id


def top_up_token(key: str, amount: int) -> int:
    """Add ``amount`` to a key's remaining quota atomically; an exhausted key becomes enabled again."""
    status = case((Token.status == TOKEN_EXHAUSTED, TOKEN_ENABLED), else_=Token.status)
    return _top_up(Token, lambda: _token_id(key), Token.remain_quota, amount, status=status)


def disable_token(key: str) -> None:
    token_id = _token_id(key)
    db.session.execute(update(Token).where(Token.id == token_id).values(status=TOKEN_DISABLED))
    db.session.commit()


def count_users() -> int:
    return db.session.execute(db.select(func.count()).select_from(User)).scalar_one()
